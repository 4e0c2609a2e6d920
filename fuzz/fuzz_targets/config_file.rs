//! The configuration file on any text: no panic; what is accepted holds every rule (a deployment
//! at least, names valid and unique, routes starting with `/`) and every limit is the value
//! written, in range and converted without wrapping (checked against the TOML read on its own).
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use toml::Value;

/// An integer field of a TOML table.
fn int(table: &Value, key: &str) -> Option<i64> {
    table.get(key).and_then(Value::as_integer)
}

/// `field` was written as `raw` in `unit`s and read as `got` (bytes or milliseconds).
fn same<T: Into<u128> + Copy>(raw: Option<i64>, got: Option<T>, unit: u128, max: i64) {
    match (raw, got) {
        (None, None) => {}
        (Some(raw), Some(got)) => {
            assert!((0..=max).contains(&raw), "{raw} accepted");
            assert_eq!(raw as u128 * unit, got.into());
        }
        (raw, got) => panic!("written {raw:?}, read {:?}", got.map(Into::into)),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = percore_config::parse(text);
    let Ok(config) = parsed else {
        return;
    };
    let value: Value = toml::from_str(text).expect("accepted text is TOML");
    assert!(!config.deployments.is_empty());
    let tables = value["deployment"].as_array().expect("[[deployment]]");
    assert_eq!(tables.len(), config.deployments.len());
    let mut names = HashSet::new();
    for (d, t) in config.deployments.iter().zip(tables) {
        assert!(percore_config::valid_name(&d.name) && names.insert(&d.name));
        assert!(!d.routes.is_empty());
        assert!(d.routes.iter().all(|r| r.path_prefix.starts_with('/')));
        let ms = |d: Option<std::time::Duration>| d.map(|d| d.as_millis() as u64);
        same(int(t, "memory_mb"), d.memory_bytes.map(|b| b as u64), 1 << 20, 4096);
        same(int(t, "max_response_mb"), d.max_response_body.map(|b| b as u64), 1 << 20, 4096);
        same(int(t, "cpu_ms"), ms(d.cpu_budget), 1, percore_config::MAX_TIME_MS as i64);
        same(int(t, "timeout_ms"), ms(d.wall_deadline), 1, percore_config::MAX_TIME_MS as i64);
        for limit in [d.memory_bytes, d.max_response_body] {
            assert_ne!(limit, Some(0));
        }
    }
    if let Some(http) = value.get("http") {
        let h = &config.http;
        same(int(http, "max_head_kib"), h.max_head.map(|b| b as u64), 1 << 10, 1024);
        same(int(http, "max_body_mib"), h.max_body.map(|b| b as u64), 1 << 20, 4096);
    }
    assert_ne!(config.cores, Some(0));
});
