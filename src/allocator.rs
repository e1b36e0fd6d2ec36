//! The process's allocator: mimalloc, for every binary that links this crate, and the two
//! settings that keep an attacker's large documents from raising the server's memory.
//!
//! glibc's allocator showed up at ~15% of the CPU under load; mimalloc is faster with many
//! threads. As it comes, though, a client sending megabyte documents back to back made the
//! server peak at 57-101 MiB where it needs about 40: mimalloc asks for transparent huge
//! pages, so a few live bytes can keep 2 MiB resident, and it keeps freed memory for 1 s
//! before giving it back. Without huge pages and with a 100 ms delay it peaks at 38-46 MiB;
//! honest load measured the same, within the noise of alternating runs.

use std::ffi::c_long;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_t`: the Rust bindings name no constant
/// for it, and the C enum keeps its order across versions (deprecated entries stay).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// Freed memory stays committed this long, for reuse without a page fault.
const PURGE_DELAY_MS: c_long = 100;

/// Applies both settings; call it in `main` once logging is set up. Either is left alone
/// when the operator sets mimalloc's own variable for it (`MIMALLOC_ALLOW_THP`, which
/// mimalloc reads itself, or `MIMALLOC_PURGE_DELAY`).
pub fn configure() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // For the whole process and every later page fault; only fails on kernels before 3.15.
        if let Err(error) = rustix::thread::disable_transparent_huge_pages(true) {
            tracing::warn!(%error, "transparent huge pages stay enabled");
        }
    }
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: `mi_option_set` stores a value that mimalloc reads at each purge.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_configured_is_the_purge_delay() {
        // Read before `configure`: mimalloc 3's purge delay defaults to 1 000 ms, and no
        // option near that index has that default.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: `mi_option_get` reads a value.
            assert_eq!(
                unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) },
                1_000
            );
        }
    }
}
