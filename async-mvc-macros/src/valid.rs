//! The rules of `#[async_controller]`, checked on the parsed [`Input`]. Every broken rule is an
//! error spanned on the offending token; all of them are collected, none stops the others.

use std::collections::HashMap;

use quote::ToTokens;
use syn::{FnArg, Item, LitStr, Type};

use crate::ast::{Input, Route, Shape};
use crate::attr::HttpMethod;

/// Collects errors, to report all of them at once.
#[derive(Debug, Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Adds an error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// All errors, combined; `None` when there are none.
    pub(crate) fn finish(self) -> Option<syn::Error> {
        self.0
    }

    /// `Err` with all errors, if any.
    pub(crate) fn into_result(self) -> syn::Result<()> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// The message of a route attribute that is not on a method of an `#[async_controller]` impl.
pub(crate) const MISPLACED_ROUTE: &str =
    "route attributes go on methods of an `#[async_controller]` impl";

/// The message of a route attribute on a controller method that the controller did not see,
/// because it was imported under another name.
pub(crate) fn renamed_route(name: &str) -> String {
    format!(
        "this is async-mvc's `#[{name}]` under another name, which `#[async_controller]` can't \
         recognise: it finds route attributes by their names (`get`, `post`, `put`, `delete`, \
         `patch`, `request_mapping`, bare or as `async_mvc::{name}`); write `#[{name}(..)]` or \
         `#[async_mvc::{name}(..)]` instead of the renamed import"
    )
}

/// Checks `input`; returns whether the item is an impl the `Controller` trait can be
/// implemented for (an inherent impl without generics), whatever its routes look like.
pub(crate) fn check(input: &Input, errors: &mut Errors) -> bool {
    let implementable = check_item(input, errors);

    let base = input.args.as_ref().and_then(|args| args.path.as_ref());
    let base_ok = match base {
        Some(lit) => match check_controller_path(&lit.value()) {
            Ok(()) => true,
            Err(message) => {
                errors.push(syn::Error::new(lit.span(), message));
                false
            }
        },
        None => true,
    };
    // With a broken controller path, route paths are still checked, against a stand-in base.
    let base = match base {
        Some(_) if !base_ok => Some("/_".to_owned()),
        base => base.map(LitStr::value),
    };

    for attr in &input.misplaced {
        errors.push(syn::Error::new_spanned(attr, MISPLACED_ROUTE));
    }

    // (cfg attributes, full path) -> (method, method name) of the routes seen so far;
    // (cfg attributes, normalized shape) -> full path. Routes under different `#[cfg]`s are
    // alternatives, not duplicates.
    let mut seen: HashMap<(String, String), Vec<Mapped<'_>>> = HashMap::new();
    let mut shapes: HashMap<(String, String), (String, &syn::Ident)> = HashMap::new();
    let has_state = input.args.as_ref().is_some_and(|args| args.state.is_some());
    for route in &input.routes {
        check_signature(route, errors);
        if !has_state {
            check_no_state_extractor(route, errors);
        }
        if let Some(produces) = &route.attr.produces {
            if let Err(message) = check_media_type(&produces.value()) {
                errors.push(syn::Error::new(produces.span(), message));
            }
        }
        let lit = &route.attr.path;
        let full = match check_route_path(base.as_deref(), &lit.value()) {
            Ok(full) => full,
            Err(message) => {
                errors.push(syn::Error::new(lit.span(), message));
                continue;
            }
        };
        if !base_ok {
            continue;
        }
        let name = &route.sig.ident;
        let method = route.attr.method;
        let cfgs = route
            .cfgs
            .iter()
            .map(|cfg| cfg.to_token_stream().to_string())
            .collect::<Vec<_>>()
            .join(" ");
        let entries = seen.entry((cfgs.clone(), full.clone())).or_default();
        if let Some((_, first)) = entries.iter().find(|(m, _)| *m == method) {
            let what = match method {
                Some(m) => format!("{} {full}", m.as_str()),
                None => format!("{full} (any method)"),
            };
            errors.push(syn::Error::new(
                lit.span(),
                format!("duplicate route `{what}`: `{first}` already maps it"),
            ));
            continue;
        }
        entries.push((method, name));
        let shape = (cfgs, path_shape(&full));
        match shapes.get(&shape) {
            Some((other, first)) if *other != full => errors.push(syn::Error::new(
                lit.span(),
                format!(
                    "route `{full}` conflicts with `{other}` (of `{first}`): the same path with \
                     other capture names; use the same names"
                ),
            )),
            Some(_) => {}
            None => {
                shapes.insert(shape, (full, name));
            }
        }
    }
    implementable
}

/// A method (or every method) mapped by a route, and the method routed to.
type Mapped<'a> = (Option<HttpMethod>, &'a syn::Ident);

/// The item is an inherent impl without generics.
fn check_item(input: &Input, errors: &mut Errors) -> bool {
    match (&input.item, input.shape) {
        (Item::Impl(block), Shape::TraitImpl) => {
            if let Some((_, path, _)) = &block.trait_ {
                errors.push(syn::Error::new_spanned(
                    path,
                    "`#[async_controller]` goes on an inherent impl block (`impl MyController { .. }`), \
                     not on a trait impl",
                ));
            }
            false
        }
        (Item::Impl(block), _) => {
            let generics = &block.generics;
            let message = "an `#[async_controller]` impl can't be generic: the controller is one \
                           concrete type, shared behind an `Arc`";
            if !generics.params.is_empty() {
                errors.push(syn::Error::new_spanned(&generics.params, message));
                false
            } else if let Some(where_clause) = &generics.where_clause {
                errors.push(syn::Error::new_spanned(where_clause, message));
                false
            } else {
                true
            }
        }
        (item, _) => {
            let message = "`#[async_controller]` goes on an inherent impl block: \
                           `impl MyController { .. }`";
            let error = match item_ident(item) {
                Some(ident) => syn::Error::new(ident.span(), message),
                None => syn::Error::new_spanned(item, message),
            };
            errors.push(error);
            false
        }
    }
}

fn item_ident(item: &Item) -> Option<&syn::Ident> {
    Some(match item {
        Item::Const(i) => &i.ident,
        Item::Enum(i) => &i.ident,
        Item::ExternCrate(i) => &i.ident,
        Item::Fn(i) => &i.sig.ident,
        Item::Mod(i) => &i.ident,
        Item::Static(i) => &i.ident,
        Item::Struct(i) => &i.ident,
        Item::Trait(i) => &i.ident,
        Item::TraitAlias(i) => &i.ident,
        Item::Type(i) => &i.ident,
        Item::Union(i) => &i.ident,
        _ => return None,
    })
}

/// `&self`, no generics, not `unsafe`, extractor arguments by value.
fn check_signature(route: &Route, errors: &mut Errors) {
    let sig = &route.sig;
    const RECEIVER: &str = "controller methods take `&self`";
    match sig.receiver() {
        None => errors.push(syn::Error::new(
            sig.ident.span(),
            format!("{RECEIVER}: add it as the first parameter"),
        )),
        Some(receiver) => {
            let shared_ref = if receiver.colon_token.is_none() {
                receiver.reference.is_some() && receiver.mutability.is_none()
            } else {
                matches!(&*receiver.ty, Type::Reference(r)
                    if r.mutability.is_none()
                        && matches!(&*r.elem, Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self")))
            };
            if !shared_ref {
                errors.push(syn::Error::new_spanned(
                    receiver,
                    format!("{RECEIVER}: the controller is shared behind an `Arc` by all requests"),
                ));
            }
        }
    }
    let message =
        "controller methods can't be generic: axum calls them with concrete extractor types";
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(&sig.generics.params, message));
    } else if let Some(where_clause) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(where_clause, message));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            unsafety,
            "controller methods can't be `unsafe`",
        ));
    }
    for arg in &sig.inputs {
        let FnArg::Typed(arg) = arg else { continue };
        match &*arg.ty {
            Type::ImplTrait(ty) => errors.push(syn::Error::new_spanned(
                ty,
                "arguments of controller methods are extractors: name the type, `impl Trait` can't be extracted",
            )),
            Type::Reference(ty) => errors.push(syn::Error::new_spanned(
                ty,
                "arguments of controller methods are extractors, taken by value: a reference can't be extracted",
            )),
            _ => {}
        }
    }
}

/// Without `state = ..`, the routes serve a router of any state, so `State<T>` can't be
/// extracted: say how to name the state, on the argument.
fn check_no_state_extractor(route: &Route, errors: &mut Errors) {
    for arg in &route.sig.inputs {
        let FnArg::Typed(arg) = arg else { continue };
        let Type::Path(path) = &*arg.ty else { continue };
        let Some(last) = path.path.segments.last() else {
            continue;
        };
        if last.ident != "State" {
            continue;
        }
        let state = match &last.arguments {
            syn::PathArguments::AngleBracketed(args) if args.args.len() == 1 => {
                args.args.to_token_stream().to_string()
            }
            _ => "AppState".to_owned(),
        };
        errors.push(syn::Error::new_spanned(
            &arg.ty,
            format!(
                "`State` needs the router's state type: write \
                 `#[async_controller(state = {state})]` on the impl block, then mount the \
                 controller on a `Router<{state}>` (`Router::new().controller(..).with_state(..)`)"
            ),
        ));
    }
}

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
fn path_shape(full: &str) -> String {
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

/// A `tchar` of RFC 9110: the characters of a token.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_tchar)
}

/// Checks a `produces = ".."` media type: `type/subtype` made of token characters, then any
/// `; name=value` parameters (value a token or a quoted string).
pub(crate) fn check_media_type(media_type: &str) -> Result<(), String> {
    let invalid = |why: &str| Err(format!("invalid media type `{media_type}`: {why}"));
    if !media_type
        .chars()
        .all(|c| c == ' ' || c == '\t' || c.is_ascii_graphic())
    {
        return invalid("a header value holds visible ASCII characters only");
    }
    let mut parts = media_type.split(';');
    let essence = parts.next().unwrap_or("").trim();
    match essence.split_once('/') {
        Some((ty, subtype)) if is_token(ty) && is_token(subtype) => {}
        _ => return invalid("expected `type/subtype`, e.g. `application/json`"),
    }
    for param in parts {
        let param = param.trim();
        let Some((name, value)) = param.split_once('=') else {
            return invalid("expected `; name=value` parameters, e.g. `; charset=utf-8`");
        };
        let quoted = value.len() >= 2
            && value.starts_with('"')
            && value.ends_with('"')
            && !value[1..value.len() - 1].replace("\\\"", "").contains('"');
        if !is_token(name) || !(is_token(value) || quoted) {
            return invalid("expected `; name=value` parameters, e.g. `; charset=utf-8`");
        }
    }
    Ok(())
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

    /// Every string of up to four characters from an alphabet of troublemakers: the checks
    /// answer, never panic.
    #[test]
    fn never_panic() {
        let alphabet = ['{', '}', '/', '*', ':', 'a', '"', ';', '=', 'é', ' ', '\\'];
        let mut inputs = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = inputs
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            inputs.extend(longer);
            inputs.dedup();
        }
        for input in &inputs {
            let _ = check_controller_path(input);
            let _ = check_route_path(None, input);
            let _ = check_route_path(Some("/base/{x}"), input);
            let _ = check_media_type(input);
            let _ = check_media_type(&format!("text/plain; {input}"));
        }
    }

    #[test]
    fn media_types() {
        for ok in [
            "text/plain",
            "application/json",
            "application/vnd.api+json",
            "text/plain; charset=utf-8",
            "text/plain;charset=UTF-8",
            "multipart/form-data; boundary=\"a b\"",
            "*/*",
        ] {
            assert_eq!(check_media_type(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "json",
            "text/",
            "/plain",
            "text/plain/x",
            "text plain",
            "text/plain; charset",
            "text/plain; =utf-8",
            "text/plain; charset=\"utf-8",
            "text/plaín",
            "text/plain\n",
        ] {
            assert!(check_media_type(bad).is_err(), "{bad}");
        }
    }
}

/// Properties of the path and media-type checks: they answer every input without panicking,
/// accept everything a small grammar of valid paths and media types generates, and agree with
/// [`join`].
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    /// Strings made of the characters the checks care about, and any strings at all.
    fn troublemaker() -> impl Strategy<Value = String> {
        prop_oneof!["[{}/*:?#a-z0-9_\"; =\t\\\\éß😀.-]{0,32}", any::<String>(),]
    }

    /// A literal segment: name characters, possibly with escaped braces `{{`, `}}`.
    fn literal() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-z0-9_.~-]{1,8}",
            1 => "[a-z]{0,3}\\{\\{[a-z]{0,3}\\}\\}[a-z]{0,3}",
        ]
    }

    /// A segment of a generated path.
    #[derive(Debug, Clone)]
    enum Segment {
        Literal(String),
        Capture,
    }

    /// A valid path: `/seg/{name}/...` — literal segments and captures — optionally ending
    /// with a catch-all and optionally with a trailing `/`. Rendered with capture names from
    /// a prefix, so one shape can be rendered with different names.
    #[derive(Debug, Clone)]
    struct Grammar {
        segments: Vec<Segment>,
        catch_all: bool,
        trailing_slash: bool,
    }

    impl Grammar {
        /// The path, captures named `{prefix}0`, `{prefix}1`, … (distinct) and the catch-all
        /// `{*{prefix}rest}`; `/` when there are no segments.
        fn render(&self, prefix: &str) -> String {
            let mut parts: Vec<String> = self
                .segments
                .iter()
                .enumerate()
                .map(|(n, segment)| match segment {
                    Segment::Literal(text) => text.clone(),
                    Segment::Capture => format!("{{{prefix}{n}}}"),
                })
                .collect();
            if self.catch_all {
                parts.push(format!("{{*{prefix}rest}}"));
            }
            let mut path = format!("/{}", parts.join("/"));
            if self.trailing_slash && !self.catch_all && !path.ends_with('/') {
                path.push('/');
            }
            path
        }
    }

    fn grammar(catch_all: bool) -> impl Strategy<Value = Grammar> {
        let segment = prop_oneof![literal().prop_map(Segment::Literal), Just(Segment::Capture)];
        (
            prop::collection::vec(segment, 0..6),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(move |(segments, with_rest, trailing_slash)| Grammar {
                segments,
                catch_all: catch_all && with_rest,
                trailing_slash,
            })
    }

    fn valid_path(prefix: &'static str, catch_all: bool) -> impl Strategy<Value = String> {
        grammar(catch_all).prop_map(move |grammar| grammar.render(prefix))
    }

    fn token() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,10}"
    }

    /// A valid media type: `type/subtype` then `; name=value` parameters, the values tokens
    /// or quoted strings.
    fn valid_media_type() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            token(),
            "[a-zA-Z0-9 ,/:=-]{0,10}".prop_map(|inner| format!("\"{inner}\"")),
        ];
        (
            token(),
            token(),
            prop::collection::vec((" ?", token(), value), 0..3),
        )
            .prop_map(|(ty, subtype, params)| {
                let mut media_type = format!("{ty}/{subtype}");
                for (space, name, value) in params {
                    media_type.push_str(&format!(";{space}{name}={value}"));
                }
                media_type
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn checks_never_panic(input in troublemaker(), base in troublemaker()) {
            let _ = check_controller_path(&input);
            let _ = check_route_path(None, &input);
            let _ = check_route_path(Some(&base), &input);
            let _ = check_route_path(Some("/base/{x}"), &input);
            let _ = check_media_type(&input);
            let _ = check_media_type(&format!("text/plain; {input}"));
            let _ = join(Some(&base), &input);
            let _ = join(None, &input);
            let _ = path_shape(&input);
        }

        #[test]
        fn accepted_paths_are_well_formed(input in troublemaker(), base in valid_path("b", false)) {
            if let Ok(full) = check_route_path(Some(&base), &input) {
                prop_assert_eq!(&full, &join(Some(&base), &input));
                prop_assert!(full.starts_with('/'), "{}", full);
                prop_assert!(!full.contains(['?', '#']), "{}", full);
                // A full path is itself a valid route path.
                prop_assert_eq!(check_route_path(None, &full), Ok(full.clone()));
            }
        }

        #[test]
        fn grammar_paths_are_accepted(base in grammar(false), route in grammar(true)) {
            let (base_path, route_path) = (base.render("b"), route.render("r"));
            prop_assert_eq!(check_controller_path(&base_path), Ok(()));
            prop_assert_eq!(check_route_path(None, &route_path), Ok(route_path.clone()));
            let full = join(Some(&base_path), &route_path);
            prop_assert_eq!(check_route_path(Some(&base_path), &route_path), Ok(full.clone()));
            // The shape erases capture names: renaming them keeps it.
            let renamed = join(Some(&base.render("other_b")), &route.render("other_r"));
            prop_assert_eq!(path_shape(&full), path_shape(&renamed));
        }

        #[test]
        fn a_route_path_with_a_catch_all_is_no_controller_path(base in valid_path("b", true)) {
            prop_assert_eq!(check_controller_path(&base).is_ok(), !base.contains("{*"));
        }

        #[test]
        fn a_capture_named_twice_is_refused(base in valid_path("x", false), route in valid_path("x", true)) {
            // Both use the names `x0`, `x1`, …: refused exactly when some name repeats.
            let names = |path: &str| -> Vec<String> {
                parse_path(path).unwrap().into_iter().map(|c| c.name.to_owned()).collect()
            };
            let base_names = names(&base);
            let clash = names(&route).iter().any(|name| base_names.contains(name));
            prop_assert_eq!(check_route_path(Some(&base), &route).is_err(), clash);
        }

        #[test]
        fn grammar_media_types_are_accepted(media_type in valid_media_type()) {
            prop_assert_eq!(check_media_type(&media_type), Ok(()));
        }

        #[test]
        fn media_types_with_a_line_break_are_refused(
            media_type in valid_media_type(),
            at in any::<prop::sample::Index>(),
            line_break in prop_oneof![Just('\r'), Just('\n'), Just('\0')],
        ) {
            let mut broken = media_type.clone();
            broken.insert(at.index(media_type.len() + 1), line_break);
            prop_assert!(check_media_type(&broken).is_err(), "{:?}", broken);
        }
    }
}
