//! Route path syntax (axum 0.8 / matchit 0.8): parsing, joining a controller path and a route
//! path, and the shape two conflicting paths share. Used by validation and by code generation.

/// A capture in a route path: `{name}` or `{*name}`.
#[derive(Debug, PartialEq, Eq)]
struct Capture<'a> {
    name: &'a str,
    catch_all: bool,
    /// Byte offset just past the closing `}`.
    end: usize,
}

/// Checks the syntax shared by controller and route paths (axum 0.8 / matchit 0.8): balanced
/// braces, named captures, no axum 0.7 `:id` / `*rest` segments, no query or fragment.
fn parse_path(path: &str) -> Result<Vec<Capture<'_>>, String> {
    if path.contains(['?', '#']) {
        return Err(format!(
            "route path `{path}` can't hold a query (`?`) or a fragment (`#`)"
        ));
    }
    for segment in path.split('/') {
        if let Some(name) = segment.strip_prefix(':') {
            return Err(format!(
                "`{segment}` is axum 0.7 syntax: axum 0.8 captures are written `{{{name}}}`"
            ));
        }
        if let Some(name) = segment.strip_prefix('*') {
            return Err(format!(
                "`{segment}` is axum 0.7 syntax: axum 0.8 catch-alls are written `{{*{name}}}`"
            ));
        }
    }
    let bytes = path.as_bytes();
    let mut captures = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => i += 2,
            b'}' if bytes.get(i + 1) == Some(&b'}') => i += 2,
            b'{' => {
                let rest = &path[i + 1..];
                let close = rest
                    .find(['}', '{', '/'])
                    .filter(|&j| rest.as_bytes()[j] == b'}');
                let Some(close) = close else {
                    return Err(format!(
                        "unbalanced `{{` in route path `{path}`: captures are written `{{id}}`, \
                         a literal `{{` is written `{{{{`"
                    ));
                };
                let inner = &rest[..close];
                let (name, catch_all) = match inner.strip_prefix('*') {
                    Some(name) => (name, true),
                    None => (inner, false),
                };
                if name.is_empty() {
                    return Err(if catch_all {
                        format!("unnamed catch-all `{{*}}` in route path `{path}`: name it, e.g. `{{*rest}}`")
                    } else {
                        format!(
                            "unnamed capture `{{}}` in route path `{path}`: name it, e.g. `{{id}}`"
                        )
                    });
                }
                i += close + 2;
                captures.push(Capture {
                    name,
                    catch_all,
                    end: i,
                });
            }
            b'}' => {
                return Err(format!(
                    "unbalanced `}}` in route path `{path}`: a literal `}}` is written `}}}}`"
                ))
            }
            _ => i += 1,
        }
    }
    if let Some(capture) = captures.iter().find(|c| c.catch_all && c.end != path.len()) {
        return Err(format!(
            "the catch-all `{{*{}}}` must end the route path `{path}`",
            capture.name
        ));
    }
    for (i, capture) in captures.iter().enumerate() {
        if captures[..i].iter().any(|c| c.name == capture.name) {
            return Err(format!(
                "capture `{}` appears twice in route path `{path}`",
                capture.name
            ));
        }
    }
    Ok(captures)
}

/// The capture names of a valid `path`, in order (for the property tests of validation).
#[cfg(test)]
pub(crate) fn capture_names(path: &str) -> Result<Vec<String>, String> {
    Ok(parse_path(path)?
        .into_iter()
        .map(|capture| capture.name.to_owned())
        .collect())
}

/// Checks the path of `#[async_controller(path = "..")]`.
pub(crate) fn check_controller_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("the controller path `{path}` must start with `/`"));
    }
    let captures = parse_path(path)?;
    if let Some(capture) = captures.iter().find(|c| c.catch_all) {
        return Err(format!(
            "the controller path can't end with a catch-all `{{*{}}}`: its routes are appended to it",
            capture.name
        ));
    }
    Ok(())
}

/// Joins the controller path (a trailing `/` dropped) and a route path.
pub(crate) fn join(base: Option<&str>, path: &str) -> String {
    let base = base.unwrap_or("").trim_end_matches('/');
    format!("{base}{path}")
}

/// Checks a route path (relative to `base`, the valid controller path, if any) and returns the
/// full path. An empty route path maps the controller path itself.
pub(crate) fn check_route_path(base: Option<&str>, path: &str) -> Result<String, String> {
    if path.is_empty() {
        if base.map_or(true, |b| b.trim_end_matches('/').is_empty()) {
            return Err("empty route path: the root is `\"/\"`".to_owned());
        }
    } else if !path.starts_with('/') {
        return Err(format!("route path `{path}` must start with `/`"));
    }
    parse_path(path)?;
    let full = join(base, path);
    // Catch-alls and duplicate names across the controller and the route path.
    parse_path(&full)?;
    Ok(full)
}

/// `full` with every capture name erased: two paths of the same shape conflict in axum.
pub(crate) fn path_shape(full: &str) -> String {
    let mut shape = String::with_capacity(full.len());
    let mut rest = full;
    while let Some(open) = rest.find('{') {
        if rest[open..].starts_with("{{") {
            shape.push_str(&rest[..open + 2]);
            rest = &rest[open + 2..];
            continue;
        }
        shape.push_str(&rest[..=open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
        if rest[open + 1..].starts_with('*') {
            shape.push('*');
        }
        rest = &rest[close..];
    }
    shape.push_str(rest);
    shape
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_paths() {
        assert_eq!(join(None, "/orders"), "/orders");
        assert_eq!(join(Some("/api"), "/orders"), "/api/orders");
        assert_eq!(join(Some("/api/"), "/orders"), "/api/orders");
        assert_eq!(join(Some("/"), "/orders"), "/orders");
        assert_eq!(join(Some("/api"), ""), "/api");
        assert_eq!(join(Some("/api"), "/"), "/api/");
    }

    #[test]
    fn accepts_route_paths() {
        assert_eq!(
            check_route_path(Some("/api"), "/orders/{id}"),
            Ok("/api/orders/{id}".to_owned())
        );
        assert_eq!(check_route_path(None, "/"), Ok("/".to_owned()));
        assert_eq!(check_route_path(Some("/api"), ""), Ok("/api".to_owned()));
        assert_eq!(
            check_route_path(Some("/t/{tenant}"), "/files/{*rest}"),
            Ok("/t/{tenant}/files/{*rest}".to_owned())
        );
        assert!(check_route_path(None, "/a/{{literal}}/{b}").is_ok());
        assert!(check_route_path(None, "/files/{name}.txt").is_ok());
    }

    #[test]
    fn rejects_route_paths() {
        let err = |base, path| check_route_path(base, path).expect_err("invalid");
        assert_eq!(
            err(None, "orders"),
            "route path `orders` must start with `/`"
        );
        assert!(err(None, "").starts_with("empty route path"));
        assert!(err(Some("/"), "").starts_with("empty route path"));
        assert_eq!(
            err(None, "/orders/:id"),
            "`:id` is axum 0.7 syntax: axum 0.8 captures are written `{id}`"
        );
        assert_eq!(
            err(None, "/files/*rest"),
            "`*rest` is axum 0.7 syntax: axum 0.8 catch-alls are written `{*rest}`"
        );
        assert!(err(None, "/orders/{id").starts_with("unbalanced `{`"));
        assert!(err(None, "/orders/{id/x}").starts_with("unbalanced `{`"));
        assert!(err(None, "/orders/id}").starts_with("unbalanced `}`"));
        assert!(err(None, "/orders/{}").starts_with("unnamed capture"));
        assert!(err(None, "/files/{*}").starts_with("unnamed catch-all"));
        assert!(err(None, "/files/{*rest}/x").starts_with("the catch-all `{*rest}` must end"));
        assert!(err(None, "/a/{id}/b/{id}").starts_with("capture `id` appears twice"));
        assert!(err(Some("/a/{id}"), "/b/{id}").starts_with("capture `id` appears twice"));
        assert!(err(None, "/a?b=1").contains("query"));
    }

    #[test]
    fn checks_controller_paths() {
        assert!(check_controller_path("/").is_ok());
        assert!(check_controller_path("/api/{tenant}/").is_ok());
        assert!(check_controller_path("api").is_err());
        assert!(check_controller_path("").is_err());
        assert!(check_controller_path("/files/{*rest}").is_err());
        assert!(check_controller_path("/a/:b").is_err());
    }

    #[test]
    fn shapes_erase_capture_names() {
        assert_eq!(path_shape("/a/{id}/b"), "/a/{}/b");
        assert_eq!(path_shape("/a/{name}/b"), "/a/{}/b");
        assert_eq!(path_shape("/f/{*rest}"), "/f/{*}");
        assert_eq!(path_shape("/x/{{lit}}/{y}"), "/x/{{lit}}/{}");
    }
}
