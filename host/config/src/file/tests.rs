use super::*;

fn refused(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn a_full_file_reads_in_the_host_units() {
    let config = parse(
        r#"
listen = "127.0.0.1:8080"
cores = 2
instances = "reset"

[http]
max_head_kib = 16
max_body_mib = 0
request_timeout_ms = 5000

[[deployment]]
name = "api"
component = "api.wasm"
memory_mb = 128
cpu_ms = 50
timeout_ms = 2000
max_response_mb = 1
routes = [{ path = "/api" }, { host = "example.com", path = "/" }]
config = { greeting = "hi" }
warmup = ["/", "POST /api"]

[[deployment]]
name = "site"
component = "oci://registry.local/site:1"
"#,
    )
    .unwrap();
    assert_eq!(config.cores, Some(2));
    assert_eq!(config.http.max_head, Some(16 << 10));
    assert_eq!(config.http.max_body, Some(0));
    assert_eq!(config.http.request_timeout, Some(Duration::from_secs(5)));
    let api = &config.deployments[0];
    assert_eq!(api.memory_bytes, Some(128 << 20));
    assert_eq!(api.max_response_body, Some(1 << 20));
    assert_eq!(api.routes[1].host.as_deref(), Some("example.com"));
    assert_eq!(config.deployments[1].routes[0].path_prefix, "/");
    assert_eq!(config.deployments[1].memory_bytes, None);
    assert_eq!(api.warmup, ["/", "POST /api"]);
    assert!(config.deployments[1].warmup.is_empty());
}

#[test]
fn values_that_cannot_work_are_refused_by_name() {
    let one = |extra: &str| {
        refused(&format!(
            "[[deployment]]\nname = \"a\"\ncomponent = \"a.wasm\"\n{extra}\n"
        ))
    };
    assert!(one("memory_mb = 17592186044416").contains("memory_mb = 17592186044416"));
    assert!(one("memory_mb = 0").contains("between 1 and 4096"));
    assert!(one("timeout_ms = 18446744073709551615").contains("timeout_ms"));
    assert!(one("routes = [{ path = \"api\" }]").contains("must start with '/'"));
    assert!(one("routes = [{ host = \"\", path = \"/\" }]").contains("host is empty"));
    assert!(one("config = { \"\" = \"x\" }").contains("config key is empty"));
    assert!(one("colour = \"blue\"").contains("unknown field"));
    assert!(refused("").contains("no [[deployment]]"));
    assert!(
        refused("cores = 0\n[[deployment]]\nname = \"a\"\ncomponent = \"a\"").contains("cores = 0")
    );
    assert!(
        refused("[http]\nmax_head_kib = 0\n[[deployment]]\nname = \"a\"\ncomponent = \"a\"")
            .contains("max_head_kib = 0")
    );
    assert!(
        refused("[[deployment]]\nname = \"Bad Name\"\ncomponent = \"a\"").contains("\"Bad Name\"")
    );
}

#[test]
fn names_and_routes_are_not_served_twice() {
    let twice = "[[deployment]]\nname = \"a\"\ncomponent = \"a\"\n[[deployment]]\nname = \"a\"\ncomponent = \"b\"";
    assert!(refused(twice).contains("defined twice"));
    let same_route = "[[deployment]]\nname = \"a\"\ncomponent = \"a\"\nroutes = [{ path = \"/x/\" }]\n\
        [[deployment]]\nname = \"b\"\ncomponent = \"b\"\nroutes = [{ path = \"/x\" }]";
    assert!(refused(same_route).contains("served twice"));
    let other_host = "[[deployment]]\nname = \"a\"\ncomponent = \"a\"\n\
        [[deployment]]\nname = \"b\"\ncomponent = \"b\"\nroutes = [{ host = \"b.example\", path = \"/\" }]";
    assert_eq!(parse(other_host).unwrap().deployments.len(), 2);
}
