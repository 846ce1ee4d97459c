//! The OpenAPI 3.0 document of the API, generated from the route table (`routes::ROUTES`, handed in) on every
//! request, so it cannot drift from what the server does: every row's methods, path and path
//! parameters, summary, family (as a tag, and its error envelope as the `default` response),
//! and the security its access class asks for. And `/swagger`, a page that reads it.
//!
//! `/swagger` is Swagger UI (`swagger-ui-dist` 5.35.0, Apache-2.0, vendored gzipped in
//! `assets/swagger-ui/`, served from this server: no CDN) in builds with the `vm` feature — the
//! server builds, where browsers manage VMs. Its bundle costs ~0.5 MB gzipped, which the router
//! binary does not carry: without `vm`, `/swagger` is a small self-contained page that lists
//! every operation from the document and links the JSON, and the asset routes answer 404.
//! Pure: the document is a function of the table.

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::Response;
use serde_json::{json, Map, Value};

use super::access::{Access, Need};
use super::error::Family;
use super::http::{full, json_response, Body};
use super::route::Route;

/// The security schemes, by the name the document uses.
const BEARER: &str = "bearerAuth";
const REFRESH_COOKIE: &str = "refreshCookie";
const SESSION_COOKIE: &str = "sessionCookie";
const QUERY_TOKEN: &str = "queryToken";
const AGENT_TOKEN: &str = "agentToken";
const METRICS_TOKEN: &str = "metricsToken";

/// The document for every route in `routes`.
pub fn document_for(routes: &[Route]) -> Value {
    let mut paths = Map::new();
    for route in routes {
        let item = paths
            .entry(route.pattern.to_owned())
            .or_insert_with(|| json!({}));
        for method in route.methods {
            item[method.to_ascii_lowercase()] = operation(route, method);
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "edgeward",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "VPN leases (seed 000), dongles and IP toggles (seed 001), \
                accounts and VMs (seeds 002/004), operations (seed 003). Generated from the \
                route table. Each family answers errors in its own envelope (the `default` \
                response of each operation).",
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "public", "description": "unauthenticated"},
            {"name": "vpn", "description": "seed 000: WireGuard keys"},
            {"name": "dongle", "description": "seed 001: dongle leases, IP toggles, modems"},
            {"name": "account", "description": "seeds 002/004 (LIMEN): accounts, VMs, consoles"},
            {"name": "operations", "description": "seed 003: session login, IAM"},
        ],
        "paths": paths,
        "components": {
            "securitySchemes": {
                BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "an access token from POST /api/auth/login"},
                REFRESH_COOKIE: {"type": "apiKey", "in": "cookie", "name": "refresh_token",
                    "description": "LIMEN's refresh cookie; writes also need X-CSRF-Token = the csrf_token cookie"},
                SESSION_COOKIE: {"type": "apiKey", "in": "cookie", "name": "session",
                    "description": "seed 003's session cookie from POST /auth/login"},
                QUERY_TOKEN: {"type": "apiKey", "in": "query", "name": "token",
                    "description": "an access token in the URL: WebSocket routes only"},
                AGENT_TOKEN: {"type": "http", "scheme": "bearer",
                    "description": "api.agent_token, when one is configured"},
                METRICS_TOKEN: {"type": "http", "scheme": "bearer",
                    "description": "api.metrics_token, when one is configured"},
            },
            "schemas": {
                "PublicError": envelope_schema(Family::Public),
                "VpnError": envelope_schema(Family::Vpn),
                "DongleError": envelope_schema(Family::Dongle),
                "AccountError": envelope_schema(Family::Account),
                "OperationsError": envelope_schema(Family::Operations),
            },
        },
    })
}

/// `GET /api/openapi.json`.
pub fn openapi_json(routes: &[Route]) -> Response<Body> {
    json_response(hyper::StatusCode::OK, &document_for(routes))
}

/// Swagger UI's files, gzipped as vendored (every browser takes `Content-Encoding: gzip`).
#[cfg(feature = "vm")]
const SWAGGER_ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js.gz"),
    ),
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui.css.gz"),
    ),
];

/// `GET /swagger/{asset}`: one of Swagger UI's files (`vm` builds), else `None` (404).
pub fn swagger_asset(name: &str) -> Option<Response<Body>> {
    #[cfg(feature = "vm")]
    {
        let (_, content_type, bytes) = SWAGGER_ASSETS.iter().find(|(n, _, _)| *n == name)?;
        let mut resp = Response::new(full(Bytes::from_static(bytes)));
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert("content-encoding", HeaderValue::from_static("gzip"));
        h.insert(
            "cache-control",
            HeaderValue::from_static("public, max-age=86400"),
        );
        Some(resp)
    }
    #[cfg(not(feature = "vm"))]
    {
        let _ = name;
        None
    }
}

/// `GET /swagger`.
pub fn swagger_page() -> Response<Body> {
    #[cfg(feature = "vm")]
    let (page, csp) = (
        SWAGGER_UI_PAGE,
        "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'",
    );
    #[cfg(not(feature = "vm"))]
    let (page, csp) = (
        SWAGGER_PAGE,
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
         connect-src 'self'",
    );
    let mut resp = Response::new(full(Bytes::from_static(page.as_bytes())));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // The page runs only this server's scripts and talks only to this server.
    resp.headers_mut()
        .insert("content-security-policy", HeaderValue::from_static(csp));
    resp
}

fn operation(route: &Route, method: &str) -> Value {
    let mut op = json!({
        "operationId": operation_id(method, route.pattern),
        "summary": route.summary,
        "tags": [route.family.label()],
        "responses": responses(route),
        "security": security(route),
        "x-edgeward-access": access_label(route.access),
    });
    let mut params: Vec<Value> = path_params(route.pattern)
        .map(|name| {
            json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
        })
        .collect();
    if route.websocket {
        params.push(json!({
            "name": "token", "in": "query", "required": false, "schema": {"type": "string"},
            "description": "an access token (browsers cannot set headers on a WebSocket)",
        }));
        op["description"] = json!(
            "A WebSocket: send `Connection: Upgrade`, `Upgrade: websocket`. The subprotocol \
             `binary` is answered when offered. `Origin` must be this host or a listed origin."
        );
    }
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if matches!(method, "POST" | "PUT" | "PATCH") {
        op["requestBody"] = json!({
            "required": false,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
            },
        });
    }
    op
}

fn responses(route: &Route) -> Value {
    let error = json!({
        "description": "an error, in the family's envelope",
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{}", schema_name(route.family))}}},
    });
    let mut out = Map::new();
    if route.websocket {
        out.insert(
            "101".into(),
            json!({"description": "Switching Protocols: the WebSocket is open"}),
        );
        out.insert(
            "426".into(),
            json!({"description": "Upgrade Required: a plain request to a WebSocket route"}),
        );
    } else {
        out.insert("200".into(), json!({"description": "OK"}));
    }
    if route.access.uses_accounts() {
        out.insert("401".into(), error.clone());
        out.insert("403".into(), error.clone());
    }
    out.insert("default".into(), error);
    Value::Object(out)
}

/// The security requirement alternatives of an access class (an empty object = none needed).
fn security(route: &Route) -> Value {
    let one = |name: &str| json!({ name: [] });
    let mut accounts = vec![one(BEARER), one(REFRESH_COOKIE), one(SESSION_COOKIE)];
    if route.websocket {
        accounts.insert(0, one(QUERY_TOKEN));
    }
    match route.access {
        Access::Public => json!([]),
        Access::Agent => json!([{}, one(AGENT_TOKEN)]),
        Access::Metrics => json!([{}, one(METRICS_TOKEN)]),
        // Also open, without a credential, to a direct loopback client or api.admin_allow.
        Access::AdminView => {
            accounts.push(json!({}));
            Value::Array(accounts)
        }
        Access::Account(_) => Value::Array(accounts),
    }
}

fn access_label(access: Access) -> String {
    match access {
        Access::Public => "public".into(),
        Access::Agent => "agent".into(),
        Access::Metrics => "metrics".into(),
        Access::AdminView => "admin-view".into(),
        Access::Account(Need::AnyUser) => "account".into(),
        Access::Account(Need::Admin) => "account:admin".into(),
        Access::Account(Need::Permission(p)) => format!("account:{}", p.as_str()),
    }
}

fn schema_name(family: Family) -> &'static str {
    match family {
        Family::Public => "PublicError",
        Family::Vpn => "VpnError",
        Family::Dongle => "DongleError",
        Family::Account => "AccountError",
        Family::Operations => "OperationsError",
    }
}

/// The JSON schema of a family's error body, derived from the body itself so the two agree.
fn envelope_schema(family: Family) -> Value {
    let sample = family.error_body(hyper::StatusCode::NOT_FOUND, "m");
    let mut properties = Map::new();
    let mut required = Vec::new();
    if let Value::Object(fields) = &sample {
        for (name, value) in fields {
            let kind = match value {
                Value::Bool(_) => "boolean",
                Value::Number(_) => "integer",
                _ => "string",
            };
            properties.insert(name.clone(), json!({ "type": kind }));
            required.push(json!(name));
        }
    }
    json!({"type": "object", "properties": properties, "required": required})
}

/// `GET /api/vms/{id}/action` → `get_api_vms_id_action`; unique per row and method.
fn operation_id(method: &str, pattern: &str) -> String {
    let mut id = method.to_ascii_lowercase();
    for part in pattern.split('/').filter(|p| !p.is_empty()) {
        id.push('_');
        id.extend(
            part.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }),
        );
    }
    if pattern == "/" {
        id.push_str("_root");
    }
    id.replace("__", "_").trim_end_matches('_').to_owned()
}

fn path_params(pattern: &str) -> impl Iterator<Item = &str> {
    pattern
        .split('/')
        .filter_map(|p| p.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
}

/// Swagger UI on the document (`vm` builds).
#[cfg(feature = "vm")]
const SWAGGER_UI_PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>edgeward API</title>
<link rel="stylesheet" href="/swagger/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/swagger/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({ url: "/api/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
</script>
</body>
</html>
"##;

/// The listing page of builds without Swagger UI.
#[cfg_attr(feature = "vm", allow(dead_code))]
const SWAGGER_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgeward API</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:70em}
h1{font-size:1.4em} .op{border:1px solid #ccc;border-radius:4px;margin:.4em 0;padding:.4em .6em}
.m{display:inline-block;min-width:4.5em;font-weight:bold;text-transform:uppercase}
.get{color:#0a6}.post{color:#06c}.put{color:#a60}.delete{color:#c00}.patch{color:#a0a}
code{background:#f4f4f4;padding:0 .2em} .tag{color:#666;font-size:.9em}
</style></head>
<body><h1>edgeward API</h1>
<p>The OpenAPI document: <a href="/api/openapi.json">/api/openapi.json</a> (open it in any
Swagger UI or editor). Operations, generated from the server's route table:</p>
<div id="ops">loading…</div>
<script>
fetch('/api/openapi.json').then(r => r.json()).then(doc => {
  const ops = document.getElementById('ops'); ops.textContent = '';
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const d = document.createElement('div'); d.className = 'op';
      const m = document.createElement('span'); m.className = 'm ' + method; m.textContent = method;
      const p = document.createElement('code'); p.textContent = path;
      const s = document.createElement('span'); s.textContent = ' ' + (op.summary || '');
      const t = document.createElement('div'); t.className = 'tag';
      t.textContent = op.tags.join(', ') + ' · access: ' + op['x-edgeward-access'];
      d.append(m, p, s, t); ops.append(d);
    }
  }
}).catch(e => { document.getElementById('ops').textContent = 'could not load the document: ' + e; });
</script></body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routes::ROUTES;

    #[test]
    fn every_route_and_method_is_in_the_document() {
        let doc = document_for(ROUTES);
        for r in ROUTES {
            for m in r.methods {
                let op = &doc["paths"][r.pattern][m.to_ascii_lowercase()];
                assert!(op.is_object(), "{m} {} missing", r.pattern);
                assert_eq!(op["summary"], r.summary);
                for name in path_params(r.pattern) {
                    let declared = op["parameters"].as_array().is_some_and(|ps| {
                        ps.iter().any(|p| p["name"] == name && p["in"] == "path")
                    });
                    assert!(declared, "{m} {}: {{{name}}} not declared", r.pattern);
                }
            }
        }
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            for m in r.methods {
                assert!(seen.insert(operation_id(m, r.pattern)), "{m} {}", r.pattern);
            }
        }
        assert_eq!(operation_id("GET", "/toggle/{n}"), "get_toggle_n");
        assert_eq!(operation_id("GET", "/"), "get_root");
    }

    #[test]
    fn security_follows_the_access_class() {
        let doc = document_for(ROUTES);
        let sec = |m: &str, p: &str| doc["paths"][p][m]["security"].clone();
        assert_eq!(sec("post", "/api/auth/login"), json!([]));
        assert_eq!(
            sec("get", "/api/admin/users"),
            json!([{BEARER: []}, {REFRESH_COOKIE: []}, {SESSION_COOKIE: []}])
        );
        assert_eq!(
            doc["paths"]["/api/admin/users"]["get"]["x-edgeward-access"],
            "account:admin"
        );
        assert_eq!(sec("get", "/vpn_api/list"), json!([{}, {AGENT_TOKEN: []}]));
    }

    #[test]
    fn envelopes_are_the_families_bodies() {
        let limen = envelope_schema(Family::Account);
        assert_eq!(limen["required"], json!(["code", "message", "error"]));
        assert_eq!(limen["properties"]["code"]["type"], "integer");
        let vpn = envelope_schema(Family::Vpn);
        assert_eq!(vpn["properties"]["success"]["type"], "boolean");
    }
}
