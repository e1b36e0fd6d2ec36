//! GraphiQL, served entirely by this server: the page and the published builds of
//! GraphiQL, React and ReactDOM (fetched and checked by `build.rs`), with their licences.
//! No request leaves for another host, so it works offline and behind strict proxies.

use axum::{
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};

macro_rules! asset {
    ($path:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/graphiql/", $path))
    };
}

/// (URL name, content type, bytes). The names carry the versions, so they never change
/// and can be cached for good.
const ASSETS: [(&str, &str, &[u8]); 4] = [
    (
        "graphiql-4.1.2.min.js",
        "text/javascript; charset=utf-8",
        asset!("graphiql/package/graphiql.min.js"),
    ),
    (
        "graphiql-4.1.2.min.css",
        "text/css; charset=utf-8",
        asset!("graphiql/package/graphiql.min.css"),
    ),
    (
        "react-18.3.1.production.min.js",
        "text/javascript; charset=utf-8",
        asset!("react/package/umd/react.production.min.js"),
    ),
    (
        "react-dom-18.3.1.production.min.js",
        "text/javascript; charset=utf-8",
        asset!("react-dom/package/umd/react-dom.production.min.js"),
    ),
];

const LICENSES: [(&str, &[u8]); 3] = [
    ("GraphiQL 4.1.2", asset!("graphiql/package/LICENSE")),
    ("React 18.3.1", asset!("react/package/LICENSE")),
    ("ReactDOM 18.3.1", asset!("react-dom/package/LICENSE")),
];

const PAGE: &str = r#"<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="robots" content="noindex">
    <title>Mini-Compete · GraphiQL</title>
    <!-- GraphiQL 4.1.2, React 18.3.1 and ReactDOM 18.3.1 (MIT); their licences: /graphiql/LICENSES.txt -->
    <link rel="stylesheet" href="/graphiql/graphiql-4.1.2.min.css">
    <link rel="license" href="/graphiql/LICENSES.txt">
    <style>
      body { margin: 0; height: 100vh; overflow: hidden; }
      #graphiql { height: 100vh; }
    </style>
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL…</div>
    <script src="/graphiql/react-18.3.1.production.min.js"></script>
    <script src="/graphiql/react-dom-18.3.1.production.min.js"></script>
    <script src="/graphiql/graphiql-4.1.2.min.js"></script>
    <script>
      const socket = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
      const fetcher = GraphiQL.createFetcher({
        url: "/graphql",
        subscriptionUrl: socket + "/graphql/ws",
      });
      ReactDOM.createRoot(document.getElementById("graphiql")).render(
        React.createElement(GraphiQL, { fetcher, defaultEditorToolsVisibility: true }),
      );
    </script>
  </body>
</html>
"#;

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// `/graphiql/{name}`: an asset, cached for a year (its name changes with its version).
pub async fn asset(Path(name): Path<String>) -> Response {
    if name == "LICENSES.txt" {
        let mut text = String::new();
        for (what, license) in LICENSES {
            text.push_str(&format!(
                "===== {what} =====\n\n{}\n\n",
                String::from_utf8_lossy(license)
            ));
        }
        return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response();
    }
    match ASSETS.iter().find(|(asset, _, _)| *asset == name) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
