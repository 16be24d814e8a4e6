//! Allocator settings for a long-running daemon whose work is large, short-lived buffers
//! (whole mails, decoded attachments, inflated archive members of up to 25 MiB).
//!
//! With glibc's defaults, RSS grew for the whole of a 5-minute soak (`bench-e2e --soak`,
//! 130 → 226 MiB, +22 MiB/min): every thread of the blocking pool gets a malloc arena of its
//! own (up to 8 per core), and after a large buffer is freed the mmap threshold rises to its
//! size, so later large buffers come from those arenas and their freed pages stay mapped.
//! One arena alone kept the same soak at 66–73 MiB. Two arenas with a fixed 1 MiB mmap
//! threshold keep large buffers out of the arenas (they go back to the kernel when freed)
//! and leave a second arena so the async workers and the blocking pool seldom contend.

/// Call first in the daemon (`run`), before any thread starts. A no-op off glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
