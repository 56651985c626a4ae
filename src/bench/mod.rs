//! `aml-operator bench`: the figures users compare operators on, measured on the real controllers.
//!
//! Every phase runs [`crate::manager::run_controllers`] (the controllers `aml-operator run` runs)
//! against the ARM emulator, with the Kubernetes API served by [`LocalKube`](crate::localkube)
//! (list + watch) in this process, or by a real cluster when `AML_E2E_KUBECONFIG` is set.
//!
//! * **P1 steady state**: N objects converge; then, over K resync periods, ARM writes per object
//!   (target 0) and ARM GETs per object per resync (target ≤ 1).
//! * **P2 convergence under ARM's buckets**: N new objects while the emulator enforces ARM's write
//!   bucket per subscription (200 burst, 10/s) and read bucket per principal (250 burst, 25/s); time
//!   to all Ready over the larger of the two lower bounds (`(N − 200) / 10` for the writes, `(R −
//!   250) / 25` for the R reads made), which bucket binds, and the number of 429s (target 0).
//! * **P3 memory**: the operator runs as its own process (`aml-operator run`, this executable)
//!   against LocalKube served over loopback HTTP, so neither stand-in is counted; its VmHWM while
//!   managing 5N objects, and RSS per 1000 objects between N and 5N.
//! * **P4 overhead**: from an object's ADDED watch event to the first ARM request for it, p50/p99,
//!   the emulator answering at once; children are created once their parents are Ready.
//! * **P5 start**: from start to the first ARM request of the first reconcile (objects already
//!   present), for a new process and for controllers started in-process; and the size of this
//!   executable.

pub mod kinds;
pub mod rss;
mod side;

use crate::arm::{ArmClient, CloudConfig};
use crate::controller::{Config, Context};
use crate::emulator::{Emulator, EmulatorConfig, EmulatorError};
use kinds::KindGen;
use side::{Side, wait_for};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Subscription of every benchmark object.
pub const SUBSCRIPTION: &str = "11111111-2222-3333-4444-555555555555";
/// Environment variable naming a kubeconfig: run against that cluster instead of LocalKube.
pub const CLUSTER_ENV: &str = "AML_E2E_KUBECONFIG";

/// Flags of `aml-operator bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Objects for P1, P2 and P4's population; P3 manages five times as many.
    /// Default 1000 (100 with --quick).
    #[arg(long)]
    pub objects: Option<usize>,
    /// A small run: 100 objects, a 20-burst 10/s write bucket and a 25-burst 25/s read bucket, 2
    /// resync periods.
    #[arg(long)]
    pub quick: bool,
    /// Only these phases, e.g. `--only p1,p4` (default: all).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// What a benchmark run measures, and at which sizes.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The kinds P2 to P4 create, round-robin.
    pub kinds: Vec<KindGen>,
    /// The kinds P1 creates, round-robin (its object count is rounded up to whole rounds); its
    /// figures are also given per kind.
    pub steady_kinds: Vec<KindGen>,
    /// P1: objects.
    pub steady_objects: usize,
    /// P1: the resync period the controllers use.
    pub resync: Duration,
    /// P1: resync periods measured.
    pub resync_periods: u32,
    /// P2: objects (0 skips P2).
    pub throttle_objects: usize,
    /// P2: the emulator's write bucket per subscription (burst, writes per second).
    pub write_limit: (u32, f64),
    /// P2: the emulator's read bucket per principal (burst, reads per second), if enforced.
    pub read_limit: Option<(u32, f64)>,
    /// P3: objects at the end (0 skips P3); the first fifth is present when the operator starts.
    pub memory_objects: usize,
    /// P3 and P5: the `aml-operator` executable to run as the operator's own process (P3 is
    /// skipped without one).
    pub operator_exe: Option<PathBuf>,
    /// P4: objects created one by one (0 skips P4).
    pub latency_objects: usize,
    /// P4: pause between two creations.
    pub latency_interval: Duration,
    /// A real cluster's kubeconfig instead of LocalKube.
    pub cluster: Option<PathBuf>,
    /// Longest wait for objects to become Ready in one phase.
    pub ready_timeout: Duration,
}

impl BenchOptions {
    /// The stated sizes: P1 1000 objects over 5 resyncs of 2 s; P2 1000 objects under 200/10 s;
    /// P3 5000 objects; P4 200 objects.
    pub fn full() -> Self {
        BenchOptions {
            kinds: kinds::all(),
            steady_kinds: kinds::every(),
            steady_objects: 1000,
            resync: Duration::from_secs(2),
            resync_periods: 5,
            throttle_objects: 1000,
            write_limit: (200, 10.0),
            read_limit: Some((250, 25.0)),
            memory_objects: 5000,
            operator_exe: None,
            latency_objects: 200,
            latency_interval: Duration::from_millis(20),
            cluster: None,
            ready_timeout: Duration::from_secs(300),
        }
    }

    /// A run of about a minute: 100 objects, a (20, 10/s) bucket, 500 for P3, 50 for P4.
    pub fn quick() -> Self {
        BenchOptions {
            steady_objects: 100,
            resync_periods: 2,
            throttle_objects: 100,
            write_limit: (20, 10.0),
            read_limit: Some((25, 25.0)),
            memory_objects: 500,
            latency_objects: 50,
            ..Self::full()
        }
    }

    /// The options `aml-operator bench` flags select (this executable runs P3's operator).
    pub fn from_args(args: &BenchArgs) -> Self {
        let mut o = if args.quick { Self::quick() } else { Self::full() };
        if let Some(n) = args.objects {
            o.steady_objects = n;
            o.throttle_objects = n;
            o.memory_objects = n.saturating_mul(5);
        }
        let want = |p: &str| args.only.is_empty() || args.only.iter().any(|o| o.eq_ignore_ascii_case(p));
        if !want("p1") {
            o.steady_objects = 0;
        }
        if !want("p2") {
            o.throttle_objects = 0;
        }
        if !want("p3") {
            o.memory_objects = 0;
        }
        if !want("p4") {
            o.latency_objects = 0;
        }
        o.operator_exe = std::env::current_exe().ok();
        o.cluster = std::env::var_os(CLUSTER_ENV).map(PathBuf::from);
        o
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The emulator did not start.
    #[error("cannot start the ARM emulator")]
    Emulator(#[source] EmulatorError),
    /// The ARM client could not be built.
    #[error("cannot build the ARM client")]
    Arm(#[source] crate::arm::Error),
    /// A Kubernetes request failed.
    #[error("Kubernetes request failed: {what}")]
    Kube {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The cluster's kubeconfig is unusable.
    #[error("cannot use the kubeconfig {0}")]
    Kubeconfig(PathBuf, #[source] kube::config::KubeconfigError),
    /// A file or process operation failed.
    #[error("{0}")]
    Io(String, #[source] std::io::Error),
    /// JSON (de)serialization failed.
    #[error("cannot build a benchmark object")]
    Json(#[source] serde_json::Error),
    /// Something did not happen in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// The options make no sense.
    #[error("invalid benchmark options: {0}")]
    Config(String),
}

/// P1: steady state.
#[derive(Clone, Debug)]
pub struct Steady {
    /// Objects managed.
    pub objects: usize,
    /// Time for all of them to become Ready.
    pub converge: Duration,
    /// Resync period.
    pub resync: Duration,
    /// Measurement window.
    pub window: Duration,
    /// ARM writes (PUT, PATCH, POST, DELETE) in the window.
    pub arm_writes: u64,
    /// ARM GETs of resources in the window.
    pub arm_gets: u64,
    /// Other ARM requests (operation polls) in the window.
    pub arm_other: u64,
    /// Most GETs of one object in the window.
    pub max_gets_one_object: u64,
    /// Most GETs one object may see in the window with ±10% jitter: ⌊window / (0.9 · resync)⌋ + 1.
    pub allowed_gets_one_object: u64,
    /// Kubernetes writes (patches, status, creates) in the window, when LocalKube counts them.
    pub kube_writes: Option<u64>,
    /// The ARM figures per kind, in the order of the kinds.
    pub per_kind: Vec<KindSteady>,
    /// All Kubernetes requests in the window, when LocalKube counts them.
    pub kube_requests: Option<u64>,
}

/// P1's ARM figures for one kind.
#[derive(Clone, Debug)]
pub struct KindSteady {
    /// The kind, e.g. `AmlOnlineEndpoint`.
    pub kind: &'static str,
    /// Objects of the kind.
    pub objects: usize,
    /// ARM writes in the window: PUT, PATCH, DELETE and POST (ARM counts a POST such as an
    /// endpoint's `listKeys` against the write budget).
    pub arm_writes: u64,
    /// ARM reads in the window: GETs of the kind's resources.
    pub arm_reads: u64,
}

impl KindSteady {
    /// ARM writes per object in the window (target 0).
    pub fn writes_per_object(&self) -> f64 {
        ratio(self.arm_writes as f64, self.objects as f64)
    }
    /// ARM reads per object per resync period, given the window's periods.
    pub fn reads_per_object_per_resync(&self, periods: f64) -> f64 {
        ratio(self.arm_reads as f64, self.objects as f64 * periods)
    }
}

impl Steady {
    /// Resync periods in the window.
    pub fn periods(&self) -> f64 {
        self.window.as_secs_f64() / self.resync.as_secs_f64()
    }
    /// ARM writes per object in the window (target 0).
    pub fn writes_per_object(&self) -> f64 {
        ratio(self.arm_writes as f64, self.objects as f64)
    }
    /// ARM GETs per object per resync period (target ≤ 1).
    pub fn gets_per_object_per_resync(&self) -> f64 {
        ratio(self.arm_gets as f64, self.objects as f64 * self.periods())
    }
}

/// P2: convergence under ARM's buckets.
#[derive(Clone, Debug)]
pub struct Throttle {
    /// Objects created at once.
    pub objects: usize,
    /// Objects Ready at the end (all, unless the wait timed out).
    pub ready: usize,
    /// Write bucket size (per subscription).
    pub burst: u32,
    /// Write refill, writes per second.
    pub rate: f64,
    /// Read bucket (size, reads per second) per principal, when enforced.
    pub read_limit: Option<(u32, f64)>,
    /// Time from creating the objects to all Ready.
    pub elapsed: Duration,
    /// Writes the emulator answered 429.
    pub throttled: u64,
    /// Reads the emulator answered 429.
    pub throttled_reads: u64,
    /// Writes ARM accepted.
    pub accepted_writes: u64,
    /// Reads ARM answered (resources and operation polls, 429s not counted).
    pub reads: u64,
}

/// The least time `requests` take through a bucket of `burst` refilled at `rate` per second.
fn bucket_bound(requests: u64, burst: u32, rate: f64) -> Duration {
    let excess = requests.saturating_sub(u64::from(burst)) as f64;
    Duration::from_secs_f64(if rate > 0.0 { excess / rate } else { 0.0 })
}

impl Throttle {
    /// The write bucket's bound, the fastest any client can be: `(N − burst) / rate` seconds
    /// (one write per object).
    pub fn write_bound(&self) -> Duration {
        bucket_bound(self.objects as u64, self.burst, self.rate)
    }
    /// The read bucket's bound for the reads this run made: `(reads − burst) / rate` seconds.
    pub fn read_bound(&self) -> Option<Duration> {
        self.read_limit.map(|(burst, rate)| bucket_bound(self.reads, burst, rate))
    }
    /// The larger bound, and which bucket it is.
    pub fn lower_bound(&self) -> (Duration, &'static str) {
        match self.read_bound() {
            Some(r) if r > self.write_bound() => (r, "reads"),
            _ => (self.write_bound(), "writes"),
        }
    }
    /// Elapsed over the binding bucket's bound (1.0 is perfect; undefined when nothing binds).
    pub fn ratio(&self) -> Option<f64> {
        let lb = self.lower_bound().0.as_secs_f64();
        (lb > 0.0).then(|| self.elapsed.as_secs_f64() / lb)
    }
}

/// P3: the operator process's memory.
#[derive(Clone, Debug)]
pub struct Memory {
    /// Objects managed at the end.
    pub objects: usize,
    /// Objects present when it started (the first measurement point).
    pub first: usize,
    /// VmRSS of an operator process watching no objects, KiB.
    pub idle_kib: u64,
    /// Open file descriptors (mostly sockets) of the operator once all objects were Ready.
    pub open_fds: Option<usize>,
    /// VmRSS once `first` objects were Ready, KiB.
    pub rss_first_kib: u64,
    /// VmRSS once all objects were Ready, KiB.
    pub rss_kib: u64,
    /// VmHWM (peak RSS) at the end, KiB.
    pub peak_kib: u64,
    /// Time for all objects to become Ready.
    pub converge: Duration,
}

impl Memory {
    /// RSS growth per 1000 objects between `first` and `objects`, KiB.
    pub fn per_1000_kib(&self) -> f64 {
        let added = self.objects.saturating_sub(self.first) as f64;
        ratio(self.rss_kib as f64 - self.rss_first_kib as f64, added / 1000.0)
    }
}

/// P4: watch event to first ARM request.
#[derive(Clone, Debug)]
pub struct Latency {
    /// Objects measured.
    pub samples: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

/// P5: start to first reconcile.
#[derive(Clone, Debug, Default)]
pub struct Startup {
    /// A new `aml-operator run` process (exec, config, clients, initial LIST) to its first ARM request.
    pub process: Option<Duration>,
    /// Objects present when that process started.
    pub process_objects: usize,
    /// `run_controllers` called in-process to its first ARM request.
    pub in_process: Option<Duration>,
    /// Objects present then.
    pub in_process_objects: usize,
}

/// Every figure of one run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// P1.
    pub steady: Option<Steady>,
    /// P2.
    pub throttle: Option<Throttle>,
    /// P3.
    pub memory: Option<Memory>,
    /// P4.
    pub latency: Option<Latency>,
    /// P5.
    pub startup: Startup,
    /// Size of the running executable, bytes, and its path.
    pub binary: Option<(u64, PathBuf)>,
    /// Where the Kubernetes API came from.
    pub kube_side: String,
    /// On a cluster: each phase's cleanup (phase, objects released, time taken).
    pub cleanups: Vec<(String, usize, Duration)>,
    /// Wall time of the whole run.
    pub wall: Duration,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn ratio_of(a: u64, b: usize) -> f64 {
    ratio(a as f64, b as f64)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "aml-operator benchmark ({}; ARM: in-process emulator)", self.kube_side)?;
        match &self.steady {
            Some(s) => {
                writeln!(
                    f,
                    "P1 steady state      {} objects, {:.1} resyncs of {:?}: ARM writes/object {:.3} (target 0), ARM GETs/object/resync {:.3} (target <= 1; max one object {} of {} allowed)",
                    s.objects, s.periods(), s.resync, s.writes_per_object(), s.gets_per_object_per_resync(), s.max_gets_one_object, s.allowed_gets_one_object
                )?;
                let kube = match (s.kube_writes, s.kube_requests) {
                    (Some(w), Some(r)) => format!(
                        "Kubernetes writes/object {:.3}, Kubernetes requests/object/resync {:.3}",
                        ratio(w as f64, s.objects as f64),
                        ratio(r as f64, s.objects as f64 * s.periods())
                    ),
                    _ => "Kubernetes requests not counted on a real cluster".into(),
                };
                writeln!(f, "                     converged in {:.1} s; other ARM requests {}; {kube}", s.converge.as_secs_f64(), s.arm_other)?;
                for k in &s.per_kind {
                    writeln!(
                        f,
                        "   {:<20} {:>5} objects: ARM writes/object {:.3} (POST counted), ARM reads/object/resync {:.3}",
                        k.kind, k.objects, k.writes_per_object(), k.reads_per_object_per_resync(s.periods())
                    )?;
                }
            }
            None => writeln!(f, "P1 steady state      skipped")?,
        }
        match &self.throttle {
            Some(t) => {
                let ratio = t.ratio().map_or("n/a (N <= burst)".to_string(), |r| format!("{r:.2}"));
                let (bound, binds) = t.lower_bound();
                let reads = match (t.read_limit, t.read_bound()) {
                    (Some((burst, rate)), Some(b)) => format!(
                        "; reads {}-burst/{}-per-s per principal: {} reads ({:.2} per object) need >= {:.1} s; 429s on reads {}",
                        burst, rate, t.reads, ratio_of(t.reads, t.objects), b.as_secs_f64(), t.throttled_reads
                    ),
                    _ => "; reads not limited".to_string(),
                };
                writeln!(
                    f,
                    "P2 ARM buckets       {} objects, writes {}-burst/{}-per-s: all Ready in {:.1} s = {ratio} x lower bound {:.1} s ({binds} bind); 429s on writes {} (target 0); accepted writes {} need >= {:.1} s{reads}{}",
                    t.objects, t.burst, t.rate, t.elapsed.as_secs_f64(), bound.as_secs_f64(), t.throttled, t.accepted_writes, t.write_bound().as_secs_f64(),
                    if t.ready < t.objects { format!(" — only {}/{} Ready", t.ready, t.objects) } else { String::new() }
                )?;
            }
            None => writeln!(f, "P2 ARM buckets       skipped")?,
        }
        match &self.memory {
            Some(m) => writeln!(
                f,
                "P3 memory            peak RSS {:.1} MiB managing {} objects (target <= 50 MiB); {:.2} MiB per 1000 objects (RSS {:.1} MiB idle, {:.1} MiB at {}, {:.1} MiB at {}; {} open fds); own process, stand-ins not counted",
                mib(m.peak_kib), m.objects, m.per_1000_kib() / 1024.0, mib(m.idle_kib), mib(m.rss_first_kib), m.first, mib(m.rss_kib), m.objects,
                m.open_fds.map_or("?".to_string(), |n| n.to_string())
            )?,
            None => writeln!(f, "P3 memory            skipped (needs the aml-operator executable and P3 objects)")?,
        }
        match &self.latency {
            Some(l) => writeln!(f, "P4 overhead          watch event -> first ARM request: p50 {}, p99 {}, max {} ({} objects)", ms(l.p50), ms(l.p99), ms(l.max), l.samples)?,
            None => writeln!(f, "P4 overhead          skipped")?,
        }
        let start = |d: Option<Duration>, n: usize, what: &str| d.map(|d| format!("{} ({what}, {n} objects present)", ms(d)));
        let parts: Vec<String> = [
            start(self.startup.process, self.startup.process_objects, "new process"),
            start(self.startup.in_process, self.startup.in_process_objects, "controllers started in-process"),
        ]
        .into_iter()
        .flatten()
        .collect();
        writeln!(f, "P5 start            to first ARM request: {}", if parts.is_empty() { "not measured".into() } else { parts.join("; ") })?;
        match &self.binary {
            Some((bytes, path)) => writeln!(f, "   binary size       {:.1} MiB ({bytes} bytes, {})", *bytes as f64 / 1048576.0, path.display())?,
            None => writeln!(f, "   binary size       unknown")?,
        }
        for (phase, objects, took) in &self.cleanups {
            writeln!(f, "   cleanup {phase:<9} {objects} objects released and deleted, namespace gone in {:.1} s", took.as_secs_f64())?;
        }
        write!(f, "wall time {:.0} s", self.wall.as_secs_f64())
    }
}

/// Runs `aml-operator bench`: every phase, then prints the figures.
pub async fn run_cli(args: BenchArgs) -> Result<(), BenchError> {
    crate::install_crypto_provider();
    let options = BenchOptions::from_args(&args);
    let report = run(&options).await?;
    println!("{report}");
    Ok(())
}

/// Runs the phases `options` asks for.
pub async fn run(options: &BenchOptions) -> Result<Report, BenchError> {
    if options.kinds.is_empty() {
        return Err(BenchError::Config("no kinds to create".into()));
    }
    let started = Instant::now();
    let mut report = Report {
        kube_side: match &options.cluster {
            Some(p) => format!("Kubernetes: the cluster of {}", p.display()),
            None => "Kubernetes: LocalKube, in-memory".into(),
        },
        binary: std::env::current_exe().ok().and_then(|p| std::fs::metadata(&p).ok().map(|m| (m.len(), p))),
        ..Report::default()
    };
    if options.steady_objects > 0 {
        let (steady, startup) = steady_state(options).await?;
        report.steady = Some(steady);
        report.startup.in_process = startup;
        report.startup.in_process_objects = options.steady_objects;
    }
    if options.throttle_objects > 0 {
        report.throttle = Some(throttled(options).await?);
    }
    if options.memory_objects > 0
        && let Some(exe) = &options.operator_exe
    {
        let (memory, startup) = memory(options, exe).await?;
        report.startup.process = startup;
        report.startup.process_objects = memory.first;
        report.memory = Some(memory);
    }
    if options.latency_objects > 0 {
        report.latency = Some(latency(options).await?);
    }
    report.wall = started.elapsed();
    report.cleanups = side::cleanups();
    Ok(report)
}

/// The operator's ARM budget in the phases where the emulator does not throttle (P1, P3, P4, P5):
/// high enough not to be what the figures measure. P2 measures convergence under ARM's real
/// buckets with the operator's budget set to match them.
const UNTHROTTLED: crate::arm::limit::RateLimits =
    crate::arm::limit::RateLimits { reads_per_second: 2000, read_burst: 20_000, writes_per_second: 2000, write_burst: 20_000 };

/// One phase's world: the Kubernetes side, the emulator, temp files.
struct World {
    side: Side,
    emulator: Emulator,
    dir: PathBuf,
    ca_file: PathBuf,
    kinds: Vec<KindGen>,
    /// Keep `dir` (the operator logs) after the phase, for a person reading an error.
    keep_files: bool,
    /// The operator's client-side ARM budget (default: the operator's defaults).
    client_limits: Option<crate::arm::limit::RateLimits>,
}

impl World {
    async fn start(options: &BenchOptions, phase: &str, emulator: EmulatorConfig) -> Result<World, BenchError> {
        crate::install_crypto_provider();
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("aml-operator-bench-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).map_err(|e| BenchError::Io(format!("cannot create {}", dir.display()), e))?;
        let ca_file = dir.join("emulator-ca.pem");
        let emulator = Emulator::start(EmulatorConfig { ca_file: Some(ca_file.clone()), ..emulator }).await.map_err(BenchError::Emulator)?;
        let side = match &options.cluster {
            Some(kubeconfig) => Side::cluster(kubeconfig, phase).await?,
            None => Side::local(),
        };
        side.credentials(SUBSCRIPTION).await?;
        Ok(World { side, emulator, dir, ca_file, kinds: options.kinds.clone(), keep_files: false, client_limits: None })
    }

    fn cloud(&self) -> CloudConfig {
        CloudConfig {
            arm_endpoint: self.emulator.arm_endpoint(),
            authority_host: self.emulator.authority_host(),
            ca_file: Some(self.ca_file.clone()),
            rate_limits: self.client_limits.unwrap_or(UNTHROTTLED),
            ..CloudConfig::default()
        }
    }

    /// Starts the real controllers in this process.
    fn controllers(&self, resync: Duration) -> Result<(tokio::task::JoinHandle<()>, Arc<AtomicBool>), BenchError> {
        let arm = ArmClient::new(&self.cloud()).map_err(BenchError::Arm)?;
        let config = Config { resync, base_backoff: Duration::from_secs(1), ..Config::default() };
        let ctx = Arc::new(Context::new(self.side.client(), arm, config));
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let namespace = self.side.watch_namespace().map(str::to_string);
        let handle = tokio::spawn(async move {
            crate::manager::run_controllers(ctx, namespace.as_deref(), flag).await;
        });
        Ok((handle, ready))
    }

    /// Waits until the controllers watch: their ready flag, or (on LocalKube) one open watch per
    /// kind. The flag alone is not enough: `Store::wait_until_ready` wakes only its last poller, and
    /// the controller's own runner polls it too, so `run_controllers`' flag can stay false.
    async fn started(&self, ready: &AtomicBool) -> Result<(), BenchError> {
        let t0 = Instant::now();
        wait_for("the controllers' watches", Duration::from_secs(60), || async {
            let watching = match self.side.local_kube() {
                Some(kube) => kube.open_watches() >= self.kinds.len(),
                // A cluster cannot tell; its caches sync within seconds.
                None => t0.elapsed() > Duration::from_secs(5),
            };
            (ready.load(Ordering::Relaxed) || watching).then_some(())
        })
        .await
    }

    /// The `index`th object, kinds round-robin.
    fn object(&self, index: usize) -> (KindGen, serde_json::Value) {
        let k = self.kinds[index % self.kinds.len()];
        (k, (k.object)(self.side.namespace(), index))
    }

    /// Creates objects `range`, in order; on a cluster, up to 16 requests at a time (one at a time,
    /// a real API server's round trip made creating 5,000 objects take minutes).
    async fn create(&self, range: std::ops::Range<usize>) -> Result<(), BenchError> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(range.map(|i| self.side.create(self.object(i).1)))
            .buffered(16)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    /// Waits until `n` objects are Ready; the time it took from `since`.
    async fn all_ready(&self, n: usize, since: Instant, timeout: Duration) -> Result<Duration, BenchError> {
        let remaining = timeout.saturating_sub(since.elapsed());
        wait_for(&format!("{n} objects Ready"), remaining, || async {
            (self.side.ready(&self.kinds).await.ok()? >= n).then(|| since.elapsed())
        })
        .await
    }

    /// When the emulator saw its first ARM request, if it has seen one.
    fn first_arm_request(&self) -> Option<Instant> {
        self.emulator.requests().first().map(|r| r.at)
    }

    async fn finish(self, controllers: Option<tokio::task::JoinHandle<()>>) {
        // Stop the controllers first: cleanup releases the objects instead of deleting their
        // Azure resources (they live in this phase's emulator), and a running controller would
        // put its finalizer back.
        if let Some(c) = controllers {
            c.abort();
            let _ = c.await;
        }
        if let Err(e) = self.side.finish(&self.kinds).await {
            eprintln!("warning: cleanup failed: {e}");
        }
        self.emulator.shutdown().await;
        if self.keep_files {
            eprintln!("the operator's logs are kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Emulator settings for a phase: operations last `op`, no Retry-After beyond the 1 s minimum poll.
fn emulator(op: Duration, write_limit: Option<(u32, f64)>) -> EmulatorConfig {
    EmulatorConfig { operation_duration: op, retry_after_secs: 1, write_limit, ..EmulatorConfig::default() }
}

/// P1 (and the in-process P5).
async fn steady_state(o: &BenchOptions) -> Result<(Steady, Option<Duration>), BenchError> {
    let mut world = World::start(o, "p1", emulator(Duration::from_millis(200), None)).await?;
    if !o.steady_kinds.is_empty() {
        world.kinds = o.steady_kinds.clone();
    }
    // Whole rounds, so every child's parent (and every endpoint's deployment) is there.
    let n = o.steady_objects.div_ceil(world.kinds.len()) * world.kinds.len();
    world.create(0..n).await?;
    let t0 = Instant::now();
    let (controllers, _) = world.controllers(o.resync)?;
    let converge = world.all_ready(n, t0, o.ready_timeout).await;
    let startup = world.first_arm_request().map(|t| t.saturating_duration_since(t0));
    let converge = match converge {
        Ok(d) => d,
        Err(e) => {
            world.finish(Some(controllers)).await;
            return Err(e);
        }
    };
    // Let the last status writes' watch events settle, then measure whole resync periods.
    tokio::time::sleep(o.resync).await;
    let before = world.emulator.requests().len();
    let kube_before = world.side.counts();
    let w0 = Instant::now();
    tokio::time::sleep(o.resync * o.resync_periods).await;
    let window = w0.elapsed();
    let requests = world.emulator.requests();
    let kube_after = world.side.counts();
    let in_window = &requests[before.min(requests.len())..];
    let mut per_object: HashMap<String, u64> = HashMap::new();
    let mut per_kind: Vec<KindSteady> = world
        .kinds
        .iter()
        .enumerate()
        .map(|(i, k)| KindSteady {
            kind: k.kind,
            objects: (0..n).filter(|j| j % world.kinds.len() == i).count(),
            arm_writes: 0,
            arm_reads: 0,
        })
        .collect();
    let (mut writes, mut gets, mut other) = (0u64, 0u64, 0u64);
    for r in in_window {
        let kind = kinds::kind_of_path(&world.kinds, &r.path);
        let counts = per_kind.iter_mut().find(|k| Some(k.kind) == kind);
        match r.method.as_str() {
            "GET" if !r.path.to_ascii_lowercase().contains("/operation") => {
                gets += 1;
                *per_object.entry(r.path.to_ascii_lowercase()).or_default() += 1;
                if let Some(c) = counts {
                    c.arm_reads += 1;
                }
            }
            "GET" => other += 1,
            _ => {
                writes += 1;
                if let Some(c) = counts {
                    c.arm_writes += 1;
                }
            }
        }
    }
    let steady = Steady {
        objects: n,
        converge,
        resync: o.resync,
        window,
        arm_writes: writes,
        arm_gets: gets,
        arm_other: other,
        max_gets_one_object: per_object.values().copied().max().unwrap_or(0),
        allowed_gets_one_object: (window.as_secs_f64() / (0.9 * o.resync.as_secs_f64())).floor() as u64 + 1,
        kube_writes: kube_before.zip(kube_after).map(|(b, a)| a.object_writes() - b.object_writes()),
        per_kind,
        kube_requests: kube_before.zip(kube_after).map(|(b, a)| a.total() - b.total()),
    };
    world.finish(Some(controllers)).await;
    Ok((steady, startup))
}

/// P2.
async fn throttled(o: &BenchOptions) -> Result<Throttle, BenchError> {
    let n = o.throttle_objects;
    let (burst, rate) = o.write_limit;
    let config = EmulatorConfig { read_limit: o.read_limit, ..emulator(Duration::from_secs(1), Some((burst, rate))) };
    let mut world = World::start(o, "p2", config).await?;
    // The operator's own budget, set the way a user sets `--arm-write-rate` and `--arm-read-rate`
    // for a principal: ARM's rates with slightly smaller bursts, so it never asks for more than
    // the buckets hold. The margin absorbs half a second of network jitter (requests sent in
    // budget can arrive closer together than they left: on two loaded cores a quarter second was
    // not always enough, and a small test bucket then saw one 429) and 2% of the burst.
    let below = |burst: u32, rate: f64| burst.saturating_sub((burst / 50).max((rate / 2.0).ceil() as u32).max(1)).max(1);
    world.client_limits = Some(crate::arm::limit::RateLimits {
        writes_per_second: (rate.floor() as u32).max(1),
        write_burst: below(burst, rate),
        ..match o.read_limit {
            Some((read_burst, read_rate)) => crate::arm::limit::RateLimits {
                reads_per_second: (read_rate.floor() as u32).max(1),
                read_burst: below(read_burst, read_rate),
                ..UNTHROTTLED
            },
            None => UNTHROTTLED,
        }
    });
    let (controllers, ready) = world.controllers(Duration::from_secs(600))?;
    world.started(&ready).await?;
    let t0 = Instant::now();
    world.create(0..n).await?;
    let lower = bucket_bound(n as u64, burst, rate).min(Duration::from_secs(3600));
    let timeout = o.ready_timeout.max(lower * 4 + Duration::from_secs(60));
    let result = world.all_ready(n, t0, timeout).await;
    let elapsed = t0.elapsed();
    let ready_now = world.side.ready(&world.kinds).await.unwrap_or(0);
    if let Err(e) = &result {
        eprintln!("warning: P2: {e}");
    }
    let requests = world.emulator.requests();
    let answered = |methods: &[&str]| requests.iter().filter(|r| methods.contains(&r.method.as_str()) && r.status != 429 && r.status != 0).count() as u64;
    let accepted_writes =
        requests.iter().filter(|r| matches!(r.method.as_str(), "PUT" | "PATCH" | "POST") && r.status < 300).count() as u64;
    let t = Throttle {
        objects: n,
        ready: ready_now,
        burst,
        rate,
        read_limit: o.read_limit,
        elapsed: result.unwrap_or(elapsed),
        throttled: world.emulator.throttled() as u64,
        throttled_reads: world.emulator.throttled_reads() as u64,
        accepted_writes,
        reads: answered(&["GET"]),
    };
    world.finish(Some(controllers)).await;
    Ok(t)
}

/// P3 (and the new-process P5): `aml-operator run` as a child process.
async fn memory(o: &BenchOptions, exe: &Path) -> Result<(Memory, Option<Duration>), BenchError> {
    let n = o.memory_objects;
    let first = (n / 5).max(1).min(n);
    let mut world = World::start(o, "p3", emulator(Duration::from_millis(200), None)).await?;
    let result = async {
        let kubeconfig = operator_kubeconfig(&world).await?;
        // An operator with nothing to manage: the floor.
        let idle = {
            let watches = world.side.local_kube().map_or(0, |k| k.open_watches());
            let mut op = Operator::spawn(&world, exe, &kubeconfig, "idle")?;
            let t0 = Instant::now();
            let sampled = async {
                wait_for("the idle operator's watch", Duration::from_secs(60), || async {
                    match world.side.local_kube() {
                        Some(k) => (k.open_watches() > watches).then_some(()),
                        None => (t0.elapsed() > Duration::from_secs(5)).then_some(()),
                    }
                })
                .await?;
                tokio::time::sleep(Duration::from_secs(2)).await;
                op.rss()
            }
            .await;
            op.stop();
            sampled?
        };
        world.create(0..first).await?;
        let mut op = Operator::spawn(&world, exe, &kubeconfig, "p3")?;
        let measured = async {
            let converge_first = world.all_ready(first, op.started, o.ready_timeout).await;
            let startup = world.first_arm_request().map(|t| t.saturating_duration_since(op.started));
            converge_first?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let at_first = op.rss()?;
            let t1 = Instant::now();
            world.create(first..n).await?;
            let converge = world.all_ready(n, t1, o.ready_timeout).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let at_end = op.rss()?;
            let open_fds = std::fs::read_dir(format!("/proc/{}/fd", op.pid())).ok().map(|d| d.count());
            Ok((
                Memory {
                    objects: n,
                    first,
                    idle_kib: idle.rss_kib,
                    open_fds,
                    rss_first_kib: at_first.rss_kib,
                    rss_kib: at_end.rss_kib,
                    peak_kib: at_end.hwm_kib,
                    converge,
                },
                startup,
            ))
        }
        .await;
        op.stop();
        measured
    }
    .await;
    world.keep_files = result.is_err();
    world.finish(None).await;
    result
}

/// The kubeconfig an operator process uses: the cluster's, or one for LocalKube served over HTTP.
async fn operator_kubeconfig(world: &World) -> Result<PathBuf, BenchError> {
    match (world.side.kubeconfig(), world.side.local_kube()) {
        (Some(k), _) => Ok(k.to_path_buf()),
        (None, Some(kube)) => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| BenchError::Io("cannot listen for LocalKube".into(), e))?;
            let addr = listener.local_addr().map_err(|e| BenchError::Io("cannot read LocalKube's address".into(), e))?;
            let served = kube.clone();
            tokio::spawn(async move {
                if let Err(e) = served.serve(listener).await {
                    eprintln!("warning: LocalKube server stopped: {e}");
                }
            });
            let path = world.dir.join("kubeconfig");
            std::fs::write(&path, kubeconfig_for(&format!("http://{addr}")))
                .map_err(|e| BenchError::Io(format!("cannot write {}", path.display()), e))?;
            Ok(path)
        }
        (None, None) => Err(BenchError::Config("no Kubernetes side".into())),
    }
}

/// An `aml-operator run` child process of this benchmark.
struct Operator {
    child: std::process::Child,
    started: Instant,
    log: PathBuf,
}

impl Operator {
    fn spawn(world: &World, exe: &Path, kubeconfig: &Path, name: &str) -> Result<Operator, BenchError> {
        let log = world.dir.join(format!("operator-{name}.log"));
        let log_file = std::fs::File::create(&log).map_err(|e| BenchError::Io(format!("cannot create {}", log.display()), e))?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("run")
            .arg("--arm-endpoint")
            .arg(world.emulator.arm_endpoint())
            .arg("--authority-host")
            .arg(world.emulator.authority_host())
            .arg("--ca-file")
            .arg(&world.ca_file)
            .arg("--metrics-addr")
            .arg("127.0.0.1:0")
            .arg("--resync-seconds")
            .arg("600")
            // The emulator does not throttle here: the ARM budget is P2's subject, not P3's.
            .arg("--arm-read-rate")
            .arg(UNTHROTTLED.reads_per_second.to_string())
            .arg("--arm-write-rate")
            .arg(UNTHROTTLED.writes_per_second.to_string())
            .env("KUBECONFIG", kubeconfig)
            // The allocator's settings as the image and the chart set them, so P3 measures what
            // ships (BENCHMARKS.md, P3).
            .env("GLIBC_TUNABLES", crate::alloc::GLIBC_TUNABLES)
            .env_remove("AML_DEFAULT_CREDENTIALS")
            .env_remove("AML_WATCH_NAMESPACE")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log_file);
        if let Some(ns) = world.side.watch_namespace() {
            cmd.arg("--namespace").arg(ns);
        }
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| BenchError::Io(format!("cannot start {}", exe.display()), e))?;
        Ok(Operator { child, started, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss(&mut self) -> Result<rss::Rss, BenchError> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(BenchError::Config(format!("the operator process exited ({status}); its log: {}", self.log.display())));
        }
        rss::of_pid(self.pid()).ok_or_else(|| BenchError::Config(format!("cannot read /proc/{}/status", self.pid())))
    }

    /// Stops this benchmark's own child, by its handle.
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A kubeconfig pointing at `server` without credentials.
fn kubeconfig_for(server: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "bench", "cluster": {"server": server}}],
        "users": [{"name": "bench", "user": {}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench", "namespace": "default"}}],
        "current-context": "bench"
    })
    .to_string()
}

/// P4.
async fn latency(o: &BenchOptions) -> Result<Latency, BenchError> {
    let world = World::start(o, "p4", emulator(Duration::ZERO, None)).await?;
    let (controllers, ready) = world.controllers(Duration::from_secs(600))?;
    let result = async {
        world.started(&ready).await?;
        // Warm up: the first object also fetches the token and opens connections.
        let first_arm = |world: &World, index: usize| {
            let (k, _) = world.object(index);
            let id = (k.arm_id)(SUBSCRIPTION, world.side.namespace(), index).to_ascii_lowercase();
            world.emulator.requests().into_iter().find(|r| r.path.to_ascii_lowercase() == id).map(|r| r.at)
        };
        world.create(0..1).await?;
        wait_for("the warm-up object's first ARM request", Duration::from_secs(60), || async { first_arm(&world, 0) }).await?;
        // What is measured is the operator's own path from watch to ARM, so a child is created
        // once its parent is Ready: the objects without a parent first, one by one, then (after
        // all of them are Ready) their children, one by one. A child created next to a parent
        // still provisioning would measure ARM's provisioning instead (the parent's operation and
        // its Retry-After: about 1 s with the emulator).
        let m = o.latency_objects;
        let mut added = Vec::with_capacity(m);
        let (parents, children): (Vec<usize>, Vec<usize>) =
            (1..=m).partition(|&i| world.object(i).1["spec"].get("workspaceRef").is_none());
        for (round, indexes) in [parents, children].into_iter().enumerate() {
            if round == 1 {
                world.all_ready(added.len() + 1, Instant::now(), o.ready_timeout).await?;
            }
            for i in indexes {
                let (_, obj) = world.object(i);
                // LocalKube sends ADDED to the watch inside `put`; a cluster's is a round trip later.
                let t = Instant::now();
                world.side.create(obj).await?;
                added.push((i, t));
                tokio::time::sleep(o.latency_interval).await;
            }
        }
        let ids: Vec<(String, Instant)> = added
            .iter()
            .map(|(i, t)| {
                let (k, _) = world.object(*i);
                ((k.arm_id)(SUBSCRIPTION, world.side.namespace(), *i).to_ascii_lowercase(), *t)
            })
            .collect();
        let firsts = wait_for("a first ARM request for every object", Duration::from_secs(120), || async {
            let mut first: HashMap<String, Instant> = HashMap::new();
            for r in world.emulator.requests() {
                first.entry(r.path.to_ascii_lowercase()).or_insert(r.at);
            }
            ids.iter().all(|(id, _)| first.contains_key(id)).then_some(first)
        })
        .await?;
        let mut lat: Vec<Duration> =
            ids.iter().filter_map(|(id, t)| firsts.get(id).map(|at| at.saturating_duration_since(*t))).collect();
        lat.sort();
        Ok(Latency { samples: lat.len(), p50: percentile(&lat, 50.0), p99: percentile(&lat, 99.0), max: lat.last().copied().unwrap_or_default() })
    }
    .await;
    world.finish(Some(controllers)).await;
    result
}

/// The `p`th percentile (nearest rank) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
