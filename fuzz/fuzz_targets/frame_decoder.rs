//! Fuzzes fondo's wire decoder: the frame reader (through a real socketpair), the
//! header decoders of both ends, the parent's result decoder and the worker's
//! argument decoder. Byte 0 of the input picks the end and the write size, bytes
//! 1–2 the frame cap; see `fondo::process::fuzz::frame_decoder`.
//!
//! Any input must give `Ok` or `Err`: a panic, a hang (libFuzzer's `-timeout`) or an
//! allocation past the cap (`-malloc_limit_mb`) is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fondo::process::fuzz::frame_decoder(data);
});
