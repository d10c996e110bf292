//! Giving freed memory back to the system.
//!
//! glibc's allocator keeps what a program frees for reuse (in one arena per thread that
//! allocated), so a process's RSS stays at its high-water mark after a burst. `malloc_trim`
//! returns the free pages of every arena. Called after a burst is over (see
//! [`crate::server`]); elsewhere (musl) it does nothing.
#![allow(unsafe_code)]

/// Returns the allocator's free memory to the system; blocking (it walks the heap).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and walks glibc's own heap under glibc's own locks;
    // it is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}
