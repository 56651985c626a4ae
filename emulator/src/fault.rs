//! Fault rules: what the emulator does instead of (or on top of) answering normally, for which
//! requests, how often and how many times. [`super::Fault`] (a scripted error answer) is the
//! simplest rule; [`FaultRule`] adds slow answers, dropped connections, operations that end
//! `Failed`/`Canceled` or outlast their `x-ms-async-operation-timeout`, and a rate.

use std::fmt;
use std::str::FromStr;

use super::Fault;

/// What a matching request gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer `status` at once with an error body carrying `code` (ARM-shaped, or Entra-shaped on
    /// the token endpoint, where `code` becomes `error`, e.g. `invalid_client`), plus
    /// `Retry-After` when set. The request has no effect.
    Status {
        /// Status code, e.g. 429, 500, 503.
        status: u16,
        /// Error code, e.g. `TooManyRequests`.
        code: String,
        /// `Retry-After` seconds to send, if any.
        retry_after_secs: Option<u64>,
    },
    /// Handle the request normally (it takes effect at once), then wait this many milliseconds
    /// before answering: a client that times out first never learns what happened.
    Delay {
        /// Milliseconds between handling and answering.
        ms: u64,
    },
    /// Close the connection without any HTTP answer (reqwest sees a transport error).
    Drop {
        /// `true`: the request is handled first (it takes effect; only the answer is lost).
        /// `false`: it is dropped unhandled.
        after_handling: bool,
    },
    /// Handle the request normally; the long-running operation it starts (if any) ends with this
    /// status. A failed or canceled write leaves the resource in that provisioning state; a failed
    /// or canceled delete leaves the resource in place.
    OperationEnds {
        /// How the operation ends.
        end: OperationEnd,
        /// ARM error code in the operation's `error`, e.g. `InternalServerError`.
        code: String,
    },
    /// Handle the request normally; the answer announces `x-ms-async-operation-timeout` of
    /// `timeout_ms` and the operation it starts runs twice that long (then succeeds).
    /// [`super::Emulator::finish_operations`] does not shorten it.
    OperationOutlasts {
        /// The announced timeout, in milliseconds.
        timeout_ms: u64,
    },
}

/// The terminal status an [`FaultKind::OperationEnds`] fault gives an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationEnd {
    /// `Failed`.
    Failed,
    /// `Canceled`.
    Canceled,
}

/// A fault for requests matching a method and a path substring: every `one_in`-th matching
/// request (1 = each one) gets `kind`, `times` times in all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// HTTP method to match (case-insensitive), or any.
    pub method: Option<String>,
    /// Substring of the request path to match (case-insensitive), or any.
    pub path_contains: Option<String>,
    /// What matching requests get.
    pub kind: FaultKind,
    /// How many requests get it (0 = none).
    pub times: usize,
    /// The rate: one matching request in this many gets the fault (0 and 1 = every one).
    pub one_in: u32,
}

impl FaultRule {
    /// A rule for every matching request, `times` times.
    pub fn new(method: Option<&str>, path_contains: Option<&str>, kind: FaultKind, times: usize) -> Self {
        FaultRule {
            method: method.map(str::to_owned),
            path_contains: path_contains.map(str::to_owned),
            kind,
            times,
            one_in: 1,
        }
    }

    /// Whether this rule is for `method` and `path` (lowercased).
    pub(crate) fn matches(&self, method: &str, path_lower: &str) -> bool {
        self.times > 0
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path_lower.contains(&p.to_ascii_lowercase()))
    }
}

impl From<Fault> for FaultRule {
    fn from(f: Fault) -> Self {
        FaultRule {
            method: f.method,
            path_contains: f.path_contains,
            kind: FaultKind::Status {
                status: f.status,
                code: f.code,
                retry_after_secs: f.retry_after_secs,
            },
            times: f.times,
            one_in: 1,
        }
    }
}

/// Why a `--fault` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault {value:?}: {why} (expected METHOD:PATH_SUBSTRING:KIND:TIMES[:ONE_IN], e.g. PUT:/workspaces/:503:2)")]
pub struct FaultParseError {
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub why: String,
}

/// The ARM error code a bare status code gets.
fn default_code(status: u16) -> &'static str {
    match status {
        400 => "BadRequest",
        401 => "AuthenticationFailed",
        403 => "AuthorizationFailed",
        404 => "NotFound",
        408 => "RequestTimeout",
        409 => "Conflict",
        429 => "TooManyRequests",
        500 => "InternalServerError",
        502 => "BadGateway",
        503 => "ServiceUnavailable",
        504 => "GatewayTimeout",
        _ => "InjectedFault",
    }
}

impl FromStr for FaultKind {
    type Err = String;

    /// `STATUS[=CODE][@RETRY_AFTER]` (e.g. `429@5`, `503`, `400=invalid_client`), `delay=MS`,
    /// `drop`, `drop-after`, `failed[=CODE]`, `canceled[=CODE]`, `outlast=MS`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (word, arg) = match s.split_once('=') {
            Some((w, a)) => (w, Some(a)),
            None => (s, None),
        };
        let ms = |arg: Option<&str>| {
            arg.and_then(|a| a.trim().parse::<u64>().ok())
                .ok_or_else(|| format!("{word} needs a number of milliseconds, e.g. {word}=3000"))
        };
        match word.to_ascii_lowercase().as_str() {
            "delay" => Ok(FaultKind::Delay { ms: ms(arg)? }),
            "outlast" => Ok(FaultKind::OperationOutlasts { timeout_ms: ms(arg)? }),
            "drop" if arg.is_none() => Ok(FaultKind::Drop { after_handling: false }),
            "drop-after" if arg.is_none() => Ok(FaultKind::Drop { after_handling: true }),
            "failed" | "canceled" => Ok(FaultKind::OperationEnds {
                end: if word.eq_ignore_ascii_case("failed") { OperationEnd::Failed } else { OperationEnd::Canceled },
                code: arg.filter(|a| !a.is_empty()).unwrap_or("InternalServerError").to_owned(),
            }),
            _ => {
                // STATUS[=CODE][@RETRY_AFTER]
                let (head, retry) = match s.split_once('@') {
                    Some((h, r)) => {
                        let secs = r.trim().parse::<u64>().map_err(|_| format!("Retry-After {r:?} is not a number of seconds"))?;
                        (h, Some(secs))
                    }
                    None => (s, None),
                };
                let (status, code) = match head.split_once('=') {
                    Some((st, code)) => (st, Some(code)),
                    None => (head, None),
                };
                let status = status
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|st| (100..=599).contains(st))
                    .ok_or_else(|| {
                        format!("unknown kind {s:?}: use a status code, delay=MS, drop, drop-after, failed, canceled or outlast=MS")
                    })?;
                Ok(FaultKind::Status {
                    status,
                    code: code.filter(|c| !c.is_empty()).unwrap_or(default_code(status)).to_owned(),
                    retry_after_secs: retry,
                })
            }
        }
    }
}

impl FromStr for FaultRule {
    type Err = FaultParseError;

    /// `METHOD:PATH_SUBSTRING:KIND:TIMES[:ONE_IN]`; `*` or empty METHOD / PATH_SUBSTRING match any.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let err = |why: String| FaultParseError { value: value.to_owned(), why };
        let parts: Vec<&str> = value.split(':').collect();
        if !(4..=5).contains(&parts.len()) {
            return Err(err(format!("{} fields", parts.len())));
        }
        let any = |s: &str| {
            let s = s.trim();
            (!s.is_empty() && s != "*").then(|| s.to_owned())
        };
        let kind = parts[2].parse::<FaultKind>().map_err(err)?;
        let times = parts[3]
            .trim()
            .parse::<usize>()
            .map_err(|_| err(format!("TIMES {:?} is not a count", parts[3])))?;
        let one_in = match parts.get(4) {
            Some(n) => n
                .trim()
                .parse::<u32>()
                .map_err(|_| err(format!("ONE_IN {n:?} is not a count")))?,
            None => 1,
        };
        Ok(FaultRule {
            method: any(parts[0]).map(|m| m.to_ascii_uppercase()),
            path_contains: any(parts[1]),
            kind,
            times,
            one_in,
        })
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Status { status, code, retry_after_secs } => {
                write!(f, "{status}={code}")?;
                if let Some(s) = retry_after_secs {
                    write!(f, "@{s}")?;
                }
                Ok(())
            }
            FaultKind::Delay { ms } => write!(f, "delay={ms}"),
            FaultKind::Drop { after_handling: false } => f.write_str("drop"),
            FaultKind::Drop { after_handling: true } => f.write_str("drop-after"),
            FaultKind::OperationEnds { end: OperationEnd::Failed, code } => write!(f, "failed={code}"),
            FaultKind::OperationEnds { end: OperationEnd::Canceled, code } => write!(f, "canceled={code}"),
            FaultKind::OperationOutlasts { timeout_ms } => write!(f, "outlast={timeout_ms}"),
        }
    }
}

/// What the HTTP layer must do with a reply after the state lock is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum Delivery {
    /// Send it.
    #[default]
    Now,
    /// Send it after this many milliseconds.
    After(u64),
    /// Close the connection without sending anything.
    Drop,
}

/// ISO-8601 duration of `ms` milliseconds, e.g. `PT1.5S`.
pub(crate) fn iso_duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("PT{}S", ms / 1000)
    } else {
        let s = format!("{}.{:03}", ms / 1000, ms % 1000);
        format!("PT{}S", s.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_print_back() {
        for s in ["429=TooManyRequests@5", "503=ServiceUnavailable", "400=invalid_client", "delay=3000", "drop", "drop-after", "failed=Boom", "canceled=InternalServerError", "outlast=300"] {
            let k: FaultKind = s.parse().unwrap();
            assert_eq!(k.to_string(), s);
        }
        assert_eq!(
            "500".parse::<FaultKind>().unwrap(),
            FaultKind::Status { status: 500, code: "InternalServerError".into(), retry_after_secs: None }
        );
        assert!("sometimes".parse::<FaultKind>().is_err());
        assert!("delay".parse::<FaultKind>().is_err());
        assert!("700".parse::<FaultKind>().is_err());
    }

    #[test]
    fn rules_parse_with_wildcards_and_rates() {
        let r: FaultRule = "put:/workspaces/:503:2".parse().unwrap();
        assert_eq!(r.method.as_deref(), Some("PUT"));
        assert_eq!(r.path_contains.as_deref(), Some("/workspaces/"));
        assert_eq!((r.times, r.one_in), (2, 1));
        let r: FaultRule = "*::drop:1:3".parse().unwrap();
        assert_eq!((r.method, r.path_contains, r.one_in), (None, None, 3));
        assert!("PUT:/x:503".parse::<FaultRule>().is_err());
        assert!("PUT:/x:503:many".parse::<FaultRule>().is_err());
    }

    #[test]
    fn durations_are_iso() {
        assert_eq!(iso_duration(3000), "PT3S");
        assert_eq!(iso_duration(300), "PT0.3S");
        assert_eq!(iso_duration(1250), "PT1.25S");
    }
}
