//! What the emulated Azure offers, and where: the regions each resource type is available in, the
//! VM sizes (and online-deployment instance types) per region, and the dedicated-core quota per
//! VM family per region. A request that asks for something else is refused the way ARM refuses
//! it; [`Catalog::default`] is what `aml-operator emulator` and the embedded emulator start with,
//! and `--locations`, `--vm-sizes` and `--core-quota` replace parts of it.
//!
//! Sources for each refusal are cited where it is built (see `refuse_*` below and `arm.rs`).

use serde_json::{Value, json};

use super::model::Kind;
use super::reply::Reply;
use super::util::normalize_location;

/// Regions where the emulated resource types are available by default: Azure regions that offer
/// Azure Machine Learning (<https://azure.microsoft.com/explore/global-infrastructure/products-by-region/>,
/// "Azure Machine Learning"), a subset. Every region the tests and `examples/` use is here.
pub const DEFAULT_LOCATIONS: &[&str] = &[
    "eastus", "eastus2", "westus", "westus2", "westus3", "centralus", "northcentralus", "southcentralus",
    "westcentralus", "canadacentral", "brazilsouth", "northeurope", "westeurope", "uksouth", "francecentral",
    "germanywestcentral", "swedencentral", "switzerlandnorth", "norwayeast", "eastasia", "southeastasia",
    "japaneast", "koreacentral", "centralindia", "australiaeast", "australiasoutheast", "uaenorth",
    "southafricanorth",
];

/// VM sizes offered by default (name, VM family as Azure's quota names it, vCPUs): a few common
/// sizes of the Azure ML compute list (`GET .../locations/{location}/vmSizes`, machineLearningServices.json
/// `VirtualMachineSize`: `name`, `family`, `vCPUs`), available in every region of the catalog.
pub const DEFAULT_VM_SIZES: &[(&str, &str, u32)] = &[
    ("Standard_DS1_v2", "standardDSv2Family", 1),
    ("Standard_DS2_v2", "standardDSv2Family", 2),
    ("Standard_DS3_v2", "standardDSv2Family", 4),
    ("Standard_DS4_v2", "standardDSv2Family", 8),
    ("Standard_DS11_v2", "standardDSv2Family", 2),
    ("Standard_D2s_v3", "standardDSv3Family", 2),
    ("Standard_D4s_v3", "standardDSv3Family", 4),
    ("Standard_D8s_v3", "standardDSv3Family", 8),
    ("Standard_D2as_v4", "standardDASv4Family", 2),
    ("Standard_E4s_v3", "standardESv3Family", 4),
    ("Standard_F4s_v2", "standardFSv2Family", 4),
    ("Standard_F8s_v2", "standardFSv2Family", 8),
    ("Standard_NC6", "standardNCFamily", 6),
    ("Standard_NC6s_v3", "standardNCSv3Family", 6),
    ("Standard_NC24ads_A100_v4", "standardNCADSA100v4Family", 24),
];

/// Dedicated cores per VM family per region when `--core-quota` says nothing else. Azure's defaults
/// vary by subscription type and family; this one is high enough for every test and example and
/// low enough that a cluster of thousands of nodes is refused.
pub const DEFAULT_CORE_QUOTA: u32 = 1000;

/// Most tags a resource may carry, and the longest tag name and value: ARM's limits
/// (<https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations>).
pub const MAX_TAGS: usize = 50;
/// Longest tag name ARM accepts (same source).
pub const MAX_TAG_NAME: usize = 512;
/// Longest tag value ARM accepts (same source).
pub const MAX_TAG_VALUE: usize = 256;
/// Characters ARM refuses in tag names (same source).
pub const TAG_NAME_FORBIDDEN: &[char] = &['<', '>', '%', '&', '\\', '?', '/'];

/// One VM size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSize {
    /// ARM's name, e.g. `Standard_DS3_v2` (compared case-insensitively, as Azure does).
    pub name: String,
    /// Quota family, e.g. `standardDSv2Family`.
    pub family: String,
    /// vCPUs per node.
    pub cores: u32,
    /// Normalized regions it is offered in; empty: every region of the catalog.
    pub regions: Vec<String>,
}

/// A core quota: `cores` for `family` (any family if `None`) in `region` (any if `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreQuota {
    /// Normalized region, or every region.
    pub region: Option<String>,
    /// VM family (case-insensitive), or every family.
    pub family: Option<String>,
    /// Dedicated cores allowed.
    pub cores: u32,
}

/// What the emulated Azure offers (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    /// Normalized regions every emulated resource type is available in, unless `type_locations`
    /// names the type.
    pub locations: Vec<String>,
    /// Regions of one resource type (`Microsoft.MachineLearningServices/workspaces`, matched
    /// case-insensitively), replacing `locations` for it; the last entry for a type wins.
    pub type_locations: Vec<(String, Vec<String>)>,
    /// VM sizes for computes and online deployments.
    pub vm_sizes: Vec<VmSize>,
    /// Quotas; the last matching entry wins, the most specific ones should come last. With none
    /// matching, [`DEFAULT_CORE_QUOTA`].
    pub core_quotas: Vec<CoreQuota>,
}

impl Default for Catalog {
    fn default() -> Self {
        Self {
            locations: DEFAULT_LOCATIONS.iter().map(|l| (*l).to_owned()).collect(),
            type_locations: Vec::new(),
            vm_sizes: DEFAULT_VM_SIZES
                .iter()
                .map(|(name, family, cores)| VmSize {
                    name: (*name).to_owned(),
                    family: (*family).to_owned(),
                    cores: *cores,
                    regions: Vec::new(),
                })
                .collect(),
            core_quotas: Vec::new(),
        }
    }
}

impl Catalog {
    /// The regions `resource_type` (e.g. `Microsoft.Storage/storageAccounts`) is offered in.
    pub fn locations_for(&self, resource_type: &str) -> &[String] {
        self.type_locations
            .iter()
            .rev()
            .find(|(t, _)| t.eq_ignore_ascii_case(resource_type))
            .map_or(&self.locations, |(_, regions)| regions)
    }

    /// Whether `resource_type` is offered in `location` (any spelling ARM accepts, e.g. `East US`).
    pub fn offers(&self, resource_type: &str, location: &str) -> bool {
        self.locations_for(resource_type).contains(&normalize_location(location))
    }

    /// The VM size called `name` (case-insensitive) if it is offered in `location`.
    pub fn vm_size(&self, name: &str, location: &str) -> Option<&VmSize> {
        let region = normalize_location(location);
        self.vm_sizes
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name) && (s.regions.is_empty() || s.regions.contains(&region)))
    }

    /// Names of the VM sizes offered in `location`.
    pub fn vm_sizes_in(&self, location: &str) -> Vec<&str> {
        let region = normalize_location(location);
        self.vm_sizes
            .iter()
            .filter(|s| s.regions.is_empty() || s.regions.contains(&region))
            .map(|s| s.name.as_str())
            .collect()
    }

    /// Dedicated cores allowed for `family` in `location`.
    pub fn core_limit(&self, family: &str, location: &str) -> u32 {
        let region = normalize_location(location);
        self.core_quotas
            .iter()
            .rev()
            .find(|q| {
                q.region.as_ref().is_none_or(|r| *r == region)
                    && q.family.as_ref().is_none_or(|f| f.eq_ignore_ascii_case(family))
            })
            .map_or(DEFAULT_CORE_QUOTA, |q| q.cores)
    }

    /// 400 `LocationNotAvailableForResourceType` when `location` is not one of the catalog's
    /// regions. ARM answers so, before the resource provider sees the request, naming the regions
    /// the type is offered in. The wording is ARM's: its resource-group variant
    /// `LocationNotAvailableForResourceGroup` reads "The provided location '...' is not available
    /// for resource group. List of available regions is '...'."
    /// (<https://learn.microsoft.com/answers/a/1534182>), and issue #26 reports this code for an
    /// ML workspace in an unknown region.
    pub(crate) fn check_location(&self, kind: Kind, location: &str) -> Result<(), Reply> {
        if self.offers(kind.type_name(), location) {
            return Ok(());
        }
        Err(Reply::arm_error(
            400,
            "LocationNotAvailableForResourceType",
            format!(
                "The provided location '{location}' is not available for resource type '{}'. List of available regions for the resource type is '{}'.",
                kind.type_name(),
                self.locations_for(kind.type_name()).join(",")
            ),
        ))
    }

    /// The ARM error object of a compute whose `vmSize` is not offered in `location`: the cluster
    /// is accepted and then ends `Failed` with this error in `provisioningErrors` (issue #26: Azure
    /// ML fails the create asynchronously, `InvalidPropertyValue`, details `SupportedVMSizes`).
    pub(crate) fn unsupported_vm_size(&self, vm_size: &str, location: &str, target: &str) -> Value {
        json!({
            "code": "InvalidPropertyValue",
            "message": format!(
                "The specified vmSize '{vm_size}' is not a supported VM size in location '{}'. Choose one of the supported VM sizes.",
                normalize_location(location)
            ),
            "target": target,
            "details": [{"code": "SupportedVMSizes", "message": self.vm_sizes_in(location).join(", ")}],
        })
    }

    /// 400 `QuotaExceeded` when `requested` more dedicated cores of `family` in `location` do not
    /// fit beside `in_use`. Worded like Azure's core-quota refusal ("Operation could not be
    /// completed as it results in exceeding approved {family} Cores quota. Additional details -
    /// ... Current Limit, Current Usage, Additional Required, (Minimum) New Limit Required";
    /// https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/error-resource-quota),
    /// and pointing at the Azure ML quota page
    /// (https://learn.microsoft.com/azure/machine-learning/how-to-manage-quotas).
    pub(crate) fn check_quota(&self, family: &str, location: &str, in_use: u64, requested: u64) -> Result<(), Reply> {
        let limit = u64::from(self.core_limit(family, location));
        if in_use.saturating_add(requested) <= limit {
            return Ok(());
        }
        let region = normalize_location(location);
        Err(Reply::arm_error(
            400,
            "QuotaExceeded",
            format!(
                "Operation could not be completed as it results in exceeding approved {family} Cores quota. Additional details - Location: {region}, Current Limit: {limit}, Current Usage: {in_use}, Additional Required: {requested}, (Minimum) New Limit Required: {}. Submit a request for Quota increase for Machine Learning in the Azure portal (Quotas) for this VM family and region.",
                in_use.saturating_add(requested)
            ),
        ))
    }
}

/// 400 when `tags` break ARM's tag limits (at most [`MAX_TAGS`], names up to [`MAX_TAG_NAME`]
/// characters without [`TAG_NAME_FORBIDDEN`], values up to [`MAX_TAG_VALUE`]); ARM checks them
/// for every resource type before the resource provider sees the request
/// (<https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations>).
/// `InvalidTagNameCharacters` and its wording are ARM's; the codes of the length and count
/// refusals are this emulator's choice (unverified), each starting with `InvalidTag`.
pub(crate) fn check_tags(body: &Value) -> Result<(), Reply> {
    let Some(tags) = body.get("tags").and_then(Value::as_object) else {
        return Ok(());
    };
    if tags.len() > MAX_TAGS {
        return Err(Reply::arm_error(
            400,
            "InvalidTagCount",
            format!("The resource has {} tags; at most {MAX_TAGS} tag name/value pairs are allowed per resource.", tags.len()),
        ));
    }
    let bad: Vec<&str> = tags.keys().filter(|k| k.contains(TAG_NAME_FORBIDDEN) || k.chars().any(char::is_control)).map(String::as_str).collect();
    if !bad.is_empty() {
        return Err(Reply::arm_error(
            400,
            "InvalidTagNameCharacters",
            format!("The tag names '{}' have reserved characters '<,>,%,&,\\,?,/' or control characters.", bad.join(",")),
        ));
    }
    if let Some(long) = tags.keys().find(|k| k.chars().count() > MAX_TAG_NAME) {
        return Err(Reply::arm_error(
            400,
            "InvalidTagNameLength",
            format!(
                "The tag name '{}...' has {} characters; tag names are limited to {MAX_TAG_NAME} characters.",
                long.chars().take(32).collect::<String>(),
                long.chars().count()
            ),
        ));
    }
    if let Some((name, value)) = tags.iter().find(|(_, v)| v.as_str().is_some_and(|v| v.chars().count() > MAX_TAG_VALUE)) {
        return Err(Reply::arm_error(
            400,
            "InvalidTagValueLength",
            format!(
                "The value of tag '{name}' has {} characters; tag values are limited to {MAX_TAG_VALUE} characters.",
                value.as_str().map_or(0, |v| v.chars().count())
            ),
        ));
    }
    Ok(())
}

/// One `--locations`: the regions of one resource type, or of every type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locations {
    /// The resource type, e.g. `Microsoft.MachineLearningServices/workspaces`; `None`: every type.
    pub resource_type: Option<String>,
    /// Normalized regions.
    pub regions: Vec<String>,
}

/// The sizes of `--vm-sizes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSizes(pub Vec<VmSize>);

/// Reads `--locations [TYPE=]REGION,...` (regions normalized; a type has a `/`).
pub fn parse_locations(value: &str) -> Result<Locations, String> {
    let (resource_type, list) = match value.split_once('=') {
        Some((t, list)) if t.contains('/') => (Some(t.trim().to_owned()), list),
        Some(_) => return Err(format!("{value:?}: the part before '=' must be a resource type such as Microsoft.MachineLearningServices/workspaces")),
        None => (None, value),
    };
    let regions: Vec<String> = list.split(',').map(normalize_location).filter(|l| !l.is_empty()).collect();
    if regions.is_empty() {
        return Err("give at least one region, e.g. eastus,westeurope".into());
    }
    Ok(Locations { resource_type, regions })
}

/// Reads `--vm-sizes NAME:FAMILY:CORES[@REGION+REGION],...`.
pub fn parse_vm_sizes(value: &str) -> Result<VmSizes, String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (spec, regions) = match item.split_once('@') {
            Some((spec, regions)) => (spec, regions.split('+').map(normalize_location).filter(|r| !r.is_empty()).collect()),
            None => (item, Vec::new()),
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let [name, family, cores] = parts.as_slice() else {
            return Err(format!("{item:?} is not NAME:FAMILY:CORES[@REGION+REGION], e.g. Standard_DS3_v2:standardDSv2Family:4"));
        };
        let cores = cores.parse::<u32>().ok().filter(|c| *c > 0).ok_or_else(|| format!("cores {cores:?} of {item:?} is not a positive count"))?;
        if name.is_empty() || family.is_empty() {
            return Err(format!("{item:?} needs a name and a family"));
        }
        out.push(VmSize { name: (*name).to_owned(), family: (*family).to_owned(), cores, regions });
    }
    if out.is_empty() {
        return Err("give at least one VM size".into());
    }
    Ok(VmSizes(out))
}

/// Reads one `--core-quota [REGION/][FAMILY=]CORES`.
pub fn parse_core_quota(value: &str) -> Result<CoreQuota, String> {
    let (scope, cores) = match value.rsplit_once('=') {
        Some((scope, cores)) => (Some(scope), cores),
        None => (None, value),
    };
    let cores = cores.trim().parse::<u32>().map_err(|_| format!("{value:?} is not [REGION/][FAMILY=]CORES, e.g. eastus/standardDSv2Family=24"))?;
    let (region, family) = match scope.map(str::trim) {
        None | Some("") => (None, None),
        Some(scope) => match scope.split_once('/') {
            Some((region, family)) => (
                Some(normalize_location(region)).filter(|r| !r.is_empty()),
                Some(family.trim().to_owned()).filter(|f| !f.is_empty()),
            ),
            None => (None, Some(scope.to_owned())),
        },
    };
    Ok(CoreQuota { region, family, cores })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_may_have_regions_of_its_own() {
        let mut c = Catalog::default();
        assert!(c.offers("Microsoft.Storage/storageAccounts", "East US") && !c.offers("Microsoft.Storage/storageAccounts", "mars-central"));
        let only = parse_locations("microsoft.machinelearningservices/workspaces=westeurope").expect("parses");
        c.type_locations.push((only.resource_type.expect("a type"), only.regions));
        assert!(!c.offers("Microsoft.MachineLearningServices/workspaces", "eastus"));
        assert!(c.offers("Microsoft.MachineLearningServices/workspaces", "westeurope"));
        assert!(c.offers("Microsoft.Storage/storageAccounts", "eastus"), "other types keep the common list");
        assert!(parse_locations("eastus=westus").is_err());
    }

    #[test]
    fn sizes_compare_case_insensitively_and_by_region() {
        let mut c = Catalog::default();
        assert!(c.vm_size("STANDARD_DS3_V2", "East US").is_some());
        assert!(c.vm_size("Standard_NOPE_v9", "eastus").is_none());
        c.vm_sizes = parse_vm_sizes("Standard_NC6:standardNCFamily:6@westus2").expect("parses").0;
        assert!(c.vm_size("standard_nc6", "westus2").is_some());
        assert!(c.vm_size("standard_nc6", "eastus").is_none());
    }

    #[test]
    fn quotas_parse_and_the_most_specific_last_entry_wins() {
        let mut c = Catalog::default();
        assert_eq!(c.core_limit("standardDSv2Family", "eastus"), DEFAULT_CORE_QUOTA);
        for q in ["10", "standardDSv2Family=20", "East US/standarddsv2family=30"] {
            c.core_quotas.push(parse_core_quota(q).expect(q));
        }
        assert_eq!(c.core_limit("standardDSv2Family", "eastus"), 30);
        assert_eq!(c.core_limit("standardDSv2Family", "westus"), 20);
        assert_eq!(c.core_limit("standardNCFamily", "westus"), 10);
        assert!(parse_core_quota("eastus/x=many").is_err());
        assert!(c.check_quota("standardDSv2Family", "eastus", 10, 20).is_ok());
        assert!(c.check_quota("standardDSv2Family", "eastus", 10, 21).is_err());
    }

    #[test]
    fn tag_limits() {
        let many: serde_json::Map<String, Value> = (0..51).map(|i| (format!("t{i}"), json!("v"))).collect();
        for (tags, code) in [
            (json!(many), "InvalidTagCount"),
            (json!({"a/b": "v"}), "InvalidTagNameCharacters"),
            (json!({"x".repeat(513): "v"}), "InvalidTagNameLength"),
            (json!({"a": "v".repeat(257)}), "InvalidTagValueLength"),
        ] {
            let reply = check_tags(&json!({"tags": tags})).expect_err(code);
            assert_eq!(reply.status, 400);
            assert_eq!(reply.body.as_ref().and_then(|b| b.pointer("/error/code")).and_then(Value::as_str), Some(code));
        }
        assert!(check_tags(&json!({"tags": {"x".repeat(512): "v".repeat(256)}})).is_ok());
    }
}
