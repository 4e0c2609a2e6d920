//! The admin API's `/metrics`: Prometheus text that parses and adds up.

use std::time::Duration;

use crate::common::guest;
use crate::{Host, curl, metric};

#[test]
fn metrics_scrape_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(&dir.path().join("state"), &[]);
    host.cli_ok(&["deploy", &guest("hello"), "--name", "ab", "--route", "/"]);
    for _ in 0..10 {
        assert_eq!(host.request("GET", "/", None).0, 200);
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, text) = curl(&format!("{}/metrics", host.admin), "GET", None, &[]);
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert!(scrape.samples.len() > 20, "{text}");
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample line {line:?}");
    }
    assert_eq!(
        metric(
            &text,
            "percore_requests_total",
            &[("deployment", "ab"), ("class", "2xx")]
        ),
        10.0
    );
    assert_eq!(metric(&text, "percore_deployments", &[]), 1.0);
    assert!(metric(&text, "percore_core_requests_total", &[]) >= 10.0);
    let stats = host.cli_ok(&["stats", "ab"]);
    assert!(stats.contains("ab"), "{stats}");
    host.stop();
}
