//! The rules of `#[async_controller]`, checked on the parsed [`Input`]. Every broken rule is an
//! error spanned on the offending token; all of them are collected, none stops the others.

use std::collections::HashMap;

use quote::ToTokens;
use syn::{FnArg, Item, LitStr, Type};

use crate::ast::{Input, Route, Shape};
use crate::attr::HttpMethod;
use crate::errors::{Errors, MISPLACED_ROUTE};
use crate::path::{check_controller_path, check_route_path, path_shape};

impl Input {
    /// Checks every rule, reporting each broken one to `errors`; returns whether the item is
    /// an impl the `Controller` trait can be implemented for (an inherent impl without
    /// generics), whatever its routes look like.
    pub(crate) fn validate(&self, errors: &mut Errors) -> bool {
        let implementable = check_item(self, errors);

        let base = self.args.as_ref().and_then(|args| args.path.as_ref());
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

        for attr in &self.misplaced {
            errors.push(syn::Error::new_spanned(attr, MISPLACED_ROUTE));
        }

        // (cfg attributes, full path) -> (method, method name) of the routes seen so far;
        // (cfg attributes, normalized shape) -> full path. Routes under different `#[cfg]`s are
        // alternatives, not duplicates.
        let mut seen: HashMap<(String, String), Vec<Mapped<'_>>> = HashMap::new();
        let mut shapes: HashMap<(String, String), (String, &syn::Ident)> = HashMap::new();
        let has_state = self.args.as_ref().is_some_and(|args| args.state.is_some());
        for route in &self.routes {
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
    use crate::path::{capture_names, join};
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
            let names = |path: &str| -> Vec<String> { capture_names(path).unwrap() };
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
