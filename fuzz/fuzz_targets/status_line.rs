#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| itm_imap::fuzz_targets::status_line(data));
