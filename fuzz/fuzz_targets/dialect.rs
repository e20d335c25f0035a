#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| itm_imap::fuzz_targets::dialect(data));
