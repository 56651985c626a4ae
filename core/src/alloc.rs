//! The allocator's settings for a long-running process (glibc; no-ops elsewhere).
//!
//! glibc's malloc gives each thread that contends for the heap an arena of its own and returns
//! little freed memory to the system: after the burst of a fleet converging, the process keeps the
//! burst's memory. Measured on a real API server with 5,000 objects (BENCHMARKS.md, P3): one
//! arena, no per-thread cache and a trim every few seconds keep the peak well below the defaults'.

use std::time::Duration;

/// How often [`keep_trimmed`] gives free memory back.
pub const TRIM_EVERY: Duration = Duration::from_secs(2);

/// One arena for every thread: the operator's threads mostly wait on the network, and a shared
/// arena reuses what another thread freed. Call before any thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        /// glibc's `M_ARENA_MAX` (malloc.h).
        const M_ARENA_MAX: i32 = -8;
        // SAFETY: mallopt only sets an allocator tunable, and this runs before any other thread
        // exists, as glibc asks.
        unsafe {
            mallopt(M_ARENA_MAX, 1);
        }
    }
}

/// glibc's per-thread cache off: the chunks it keeps are never merged with their neighbours, and
/// in a heap whose cached objects are replaced at every watch event they pin partly used pages
/// that no trim can give back (P3: 57.2 MiB with it, 49.6 MiB without).
pub const TCACHE_TUNABLE: &str = "glibc.malloc.tcache_count=0";

/// Re-executes this process with [`TCACHE_TUNABLE`] added to `GLIBC_TUNABLES`, which glibc reads
/// only when a process starts (no `mallopt` sets it). Returns without doing anything when the
/// variable already names the cache (set by this, or by a person who chose otherwise), or when the
/// exec fails (then the process goes on with glibc's default). Call before any thread starts.
pub fn without_thread_cache() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if current.contains("glibc.malloc.tcache_count") {
            return;
        }
        let Ok(exe) = std::env::current_exe() else { return };
        let value = if current.is_empty() { TCACHE_TUNABLE.to_string() } else { format!("{current}:{TCACHE_TUNABLE}") };
        let error = std::process::Command::new(exe).args(std::env::args_os().skip(1)).env("GLIBC_TUNABLES", value).exec();
        eprintln!("warning: cannot re-execute with GLIBC_TUNABLES={TCACHE_TUNABLE} ({error}); going on with glibc's default");
    }
}

/// Gives the allocator's free pages back to the system (glibc's `malloc_trim`).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim takes the allocator's own locks and only returns free pages.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Gives free memory back every [`TRIM_EVERY`], for the life of the process (a few milliseconds
/// of one blocking thread each time).
pub async fn keep_trimmed() {
    loop {
        tokio::time::sleep(TRIM_EVERY).await;
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    }
}
