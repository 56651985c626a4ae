//! The allocator's settings for the long-running process (glibc).
//!
//! glibc's malloc gives each thread that contends for the heap an arena of its own, and keeps
//! freed chunks in per-thread caches that are never merged with their neighbours: after the burst
//! of a fleet converging, the process keeps much of the burst's memory. Measured on a real API
//! server with 5,000 objects (BENCHMARKS.md, P3), one arena and no per-thread cache keep the peak
//! well below the defaults'.
//!
//! glibc reads these settings only when a process starts, from the environment: the image
//! (`Dockerfile`) and the chart set [`GLIBC_TUNABLES`], where whoever runs the operator sees them
//! and can change them, and the benchmark starts P3's operator with the same value.

/// The value the image and the chart give `GLIBC_TUNABLES`: one arena for every thread (the
/// operator's threads mostly wait on the network, and a shared arena reuses what another thread
/// freed) and no per-thread cache (its chunks pin partly used pages that glibc cannot give back).
pub const GLIBC_TUNABLES: &str = "glibc.malloc.tcache_count=0:glibc.malloc.arena_max=1";
