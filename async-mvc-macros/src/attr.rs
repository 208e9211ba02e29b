//! Parsing of the attribute arguments: `#[async_controller(path = "..")]`, `#[get("..")]`, …,
//! `#[request_mapping(path = "..", method = "..", produces = "..")]`.
//!
//! Only the syntax and the per-attribute rules (duplicate key, missing path, unknown method) are
//! checked here; path and media-type syntax are checked in `valid.rs`.

use proc_macro2::{Span, TokenStream};
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Attribute, LitStr, Meta, Token, Type};

use crate::errors::Errors;

mod kw {
    syn::custom_keyword!(path);
    syn::custom_keyword!(method);
    syn::custom_keyword!(produces);
    syn::custom_keyword!(state);
}

/// The HTTP methods a route can be mapped to (Spring's `RequestMethod`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum HttpMethod {
    Get,
    Post,
    Put,
    Delete,
    Patch,
    Head,
    Options,
    Trace,
}

impl HttpMethod {
    pub(crate) const ALL: [HttpMethod; 8] = [
        HttpMethod::Get,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Delete,
        HttpMethod::Patch,
        HttpMethod::Head,
        HttpMethod::Options,
        HttpMethod::Trace,
    ];

    /// The method's name, which is also the name of its `axum::routing::MethodFilter` constant.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Head => "HEAD",
            HttpMethod::Options => "OPTIONS",
            HttpMethod::Trace => "TRACE",
        }
    }

    /// Case-insensitive lookup of a `method = ".."` value.
    pub(crate) fn from_name(name: &str) -> Option<HttpMethod> {
        HttpMethod::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(name.trim()))
    }
}

/// Which route attribute an attribute is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RouteKind {
    /// `#[get]`, `#[post]`, `#[put]`, `#[delete]`, `#[patch]`.
    Verb(HttpMethod),
    /// `#[request_mapping]`.
    RequestMapping,
}

impl RouteKind {
    /// The route attribute named `name`, if it is one.
    pub(crate) fn from_name(name: &str) -> Option<RouteKind> {
        Some(match name {
            "get" => RouteKind::Verb(HttpMethod::Get),
            "post" => RouteKind::Verb(HttpMethod::Post),
            "put" => RouteKind::Verb(HttpMethod::Put),
            "delete" => RouteKind::Verb(HttpMethod::Delete),
            "patch" => RouteKind::Verb(HttpMethod::Patch),
            "request_mapping" => RouteKind::RequestMapping,
            _ => return None,
        })
    }

    /// Recognizes `#[get(..)]`, `#[async_mvc::get(..)]`, `#[async_mvc_macros::get(..)]`, ….
    pub(crate) fn of_attr(attr: &Attribute) -> Option<RouteKind> {
        let path = attr.path();
        let last = path.segments.last()?;
        let prefix_ok = match path.segments.len() {
            1 => path.leading_colon.is_none(),
            2 => {
                let first = &path.segments[0].ident;
                first == "async_mvc" || first == "async_mvc_macros"
            }
            _ => false,
        };
        if !prefix_ok || !last.arguments.is_none() {
            return None;
        }
        RouteKind::from_name(&last.ident.to_string())
    }

    fn name(self) -> &'static str {
        match self {
            RouteKind::Verb(HttpMethod::Get) => "get",
            RouteKind::Verb(HttpMethod::Post) => "post",
            RouteKind::Verb(HttpMethod::Put) => "put",
            RouteKind::Verb(HttpMethod::Delete) => "delete",
            RouteKind::Verb(HttpMethod::Patch) => "patch",
            // HEAD, OPTIONS and TRACE have no attribute of their own.
            RouteKind::Verb(_) | RouteKind::RequestMapping => "request_mapping",
        }
    }
}

/// `#[async_controller(..)]`'s arguments.
#[derive(Debug, Default)]
pub(crate) struct ControllerArgs {
    /// The base path of every route (Spring's class-level `@RequestMapping`).
    pub(crate) path: Option<LitStr>,
    /// The router's state type (`state = AppState`): the controller's routes are a
    /// `Router<AppState>`, so its methods may take `State<AppState>` and other extractors of
    /// that state. `None`: routes for a router of any state.
    pub(crate) state: Option<Type>,
}

/// One parsed route attribute.
#[derive(Debug, Clone)]
pub(crate) struct RouteAttr {
    /// The route path, relative to the controller's path.
    pub(crate) path: LitStr,
    /// The method the route answers, or `None` for every method.
    pub(crate) method: Option<HttpMethod>,
    /// The default `Content-Type` of the responses.
    pub(crate) produces: Option<LitStr>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Path,
    Method,
    Produces,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::Path => "path",
            Key::Method => "method",
            Key::Produces => "produces",
        }
    }
}

struct Entry {
    key: Key,
    /// The key token (or the literal itself for a positional path).
    span: Span,
    value: LitStr,
}

/// Parses `"..", key = "..", …` where a leading string literal is the path, with the keys in
/// `keys`. A key out of `keys` is reported by `syn`'s lookahead, e.g. ``expected `path` or
/// `produces` ``, spanned on the unknown key.
fn parse_entries(input: ParseStream<'_>, keys: &[Key]) -> syn::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    while !input.is_empty() {
        let lookahead = input.lookahead1();
        if entries.is_empty() && lookahead.peek(LitStr) {
            let value: LitStr = input.parse()?;
            entries.push(Entry {
                key: Key::Path,
                span: value.span(),
                value,
            });
        } else {
            let mut found = None;
            for &key in keys {
                let peeked = match key {
                    Key::Path => lookahead.peek(kw::path),
                    Key::Method => lookahead.peek(kw::method),
                    Key::Produces => lookahead.peek(kw::produces),
                };
                if peeked && found.is_none() {
                    found = Some(key);
                }
            }
            let Some(key) = found else {
                return Err(lookahead.error());
            };
            let ident: syn::Ident = input.call(syn::ext::IdentExt::parse_any)?;
            input.parse::<Token![=]>()?;
            let value: LitStr = input.parse()?;
            entries.push(Entry {
                key,
                span: ident.span(),
                value,
            });
        }
        if input.is_empty() {
            break;
        }
        input.parse::<Token![,]>()?;
    }
    Ok(entries)
}

/// Reports a second occurrence of any key, spanned on it.
fn check_duplicates(entries: &[Entry], errors: &mut Errors) {
    for (i, entry) in entries.iter().enumerate() {
        if entries[..i].iter().any(|e| e.key == entry.key) {
            let message = if entry.key == Key::Path {
                "duplicate route path: give it once, either as the first argument or as `path = \"..\"`"
                    .to_owned()
            } else {
                format!("duplicate `{}`", entry.key.name())
            };
            errors.push(syn::Error::new(entry.span, message));
        }
    }
}

fn first(entries: &[Entry], key: Key) -> Option<&Entry> {
    entries.iter().find(|e| e.key == key)
}

/// Parses the arguments of `#[async_controller]`: nothing, `"/base"` or `path = "/base"`, and
/// `state = Type`, in any order (a plain path first).
pub(crate) fn controller_args(tokens: TokenStream) -> syn::Result<ControllerArgs> {
    let parse = |input: ParseStream<'_>| {
        let mut args = ControllerArgs::default();
        let mut errors = Errors::default();
        let mut first = true;
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if first && lookahead.peek(LitStr) {
                args.path = Some(input.parse()?);
            } else if lookahead.peek(kw::path) {
                let key: kw::path = input.parse()?;
                input.parse::<Token![=]>()?;
                let value: LitStr = input.parse()?;
                if args.path.replace(value).is_some() {
                    errors.push(syn::Error::new(
                        key.span,
                        "duplicate controller path: give it once, either as the first argument or as `path = \"..\"`",
                    ));
                }
            } else if lookahead.peek(kw::state) {
                let key: kw::state = input.parse()?;
                input.parse::<Token![=]>()?;
                let value: Type = input.parse()?;
                if args.state.replace(value).is_some() {
                    errors.push(syn::Error::new(key.span, "duplicate `state`"));
                }
            } else {
                return Err(lookahead.error());
            }
            first = false;
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        errors.into_result()?;
        Ok(args)
    };
    parse.parse2(tokens)
}

/// Parses one route attribute of the kind `kind`.
pub(crate) fn route_attr(attr: &Attribute, kind: RouteKind) -> syn::Result<RouteAttr> {
    let keys: &[Key] = match kind {
        RouteKind::Verb(_) => &[Key::Path, Key::Produces],
        RouteKind::RequestMapping => &[Key::Path, Key::Method, Key::Produces],
    };
    let entries = match &attr.meta {
        Meta::Path(_) => Vec::new(),
        Meta::List(list) => {
            (|input: ParseStream<'_>| parse_entries(input, keys)).parse2(list.tokens.clone())?
        }
        Meta::NameValue(nv) => {
            return Err(syn::Error::new(
                nv.eq_token.span(),
                format!("expected `#[{}(\"/path\")]`", kind.name()),
            ));
        }
    };
    let mut errors = Errors::default();
    check_duplicates(&entries, &mut errors);

    let path = first(&entries, Key::Path).map(|e| e.value.clone());
    if path.is_none() {
        let example = match kind {
            RouteKind::Verb(_) => format!("#[{}(\"/path\")]", kind.name()),
            RouteKind::RequestMapping => "#[request_mapping(path = \"/path\")]".to_owned(),
        };
        errors.push(syn::Error::new_spanned(
            attr,
            format!("missing route path: write `{example}`"),
        ));
    }

    let method = match kind {
        RouteKind::Verb(method) => Some(method),
        RouteKind::RequestMapping => match first(&entries, Key::Method) {
            None => None,
            Some(entry) => {
                let method = HttpMethod::from_name(&entry.value.value());
                if method.is_none() {
                    let all: Vec<&str> = HttpMethod::ALL.iter().map(|m| m.as_str()).collect();
                    errors.push(syn::Error::new(
                        entry.value.span(),
                        format!(
                            "unknown HTTP method `{}`: expected one of {}",
                            entry.value.value(),
                            all.join(", ")
                        ),
                    ));
                }
                method
            }
        },
    };
    errors.into_result()?;
    let Some(path) = path else {
        // Unreachable: a missing path is an error above.
        return Err(syn::Error::new_spanned(attr, "missing route path"));
    };
    Ok(RouteAttr {
        path,
        method,
        produces: first(&entries, Key::Produces).map(|e| e.value.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn attr(tokens: TokenStream) -> Attribute {
        let mut attrs = Attribute::parse_outer
            .parse2(tokens)
            .expect("test attribute parses");
        attrs.remove(0)
    }

    fn route(tokens: TokenStream) -> syn::Result<RouteAttr> {
        let attr = attr(tokens);
        let kind = RouteKind::of_attr(&attr).expect("a route attribute");
        route_attr(&attr, kind)
    }

    #[test]
    fn recognizes_route_attributes() {
        assert_eq!(
            RouteKind::of_attr(&attr(quote!(#[get("/x")]))),
            Some(RouteKind::Verb(HttpMethod::Get))
        );
        assert_eq!(
            RouteKind::of_attr(&attr(quote!(#[async_mvc::request_mapping(path = "/x")]))),
            Some(RouteKind::RequestMapping)
        );
        assert_eq!(RouteKind::of_attr(&attr(quote!(#[other::get]))), None);
        assert_eq!(RouteKind::of_attr(&attr(quote!(#[doc = "x"]))), None);
    }

    #[test]
    fn parses_verb_forms() {
        let r = route(quote!(#[post("/a", produces = "text/plain")])).expect("parses");
        assert_eq!(r.path.value(), "/a");
        assert_eq!(r.method, Some(HttpMethod::Post));
        assert_eq!(r.produces.map(|p| p.value()).as_deref(), Some("text/plain"));

        let r = route(quote!(#[get(path = "/b")])).expect("parses");
        assert_eq!(r.path.value(), "/b");
    }

    #[test]
    fn parses_request_mapping() {
        let r = route(quote!(#[request_mapping(path = "/a", method = "delete")])).expect("parses");
        assert_eq!(r.method, Some(HttpMethod::Delete));
        let r = route(quote!(#[request_mapping("/a")])).expect("parses");
        assert_eq!(r.method, None);
    }

    #[test]
    fn reports_bad_arguments() {
        let msg = |t| route(t).expect_err("fails").to_string();
        assert_eq!(
            msg(quote!(#[get("/a", prodcues = "x/y")])),
            "expected `path` or `produces`"
        );
        assert_eq!(
            msg(quote!(#[get("/a", produces = "a/b", produces = "a/b")])),
            "duplicate `produces`"
        );
        assert!(msg(quote!(#[get])).starts_with("missing route path"));
        assert!(
            msg(quote!(#[request_mapping(path = "/a", method = "FETCH")]))
                .starts_with("unknown HTTP method `FETCH`")
        );
        assert!(msg(quote!(#[get("/a", method = "GET")])).contains("expected"));
    }

    #[test]
    fn controller_args_forms() {
        assert!(controller_args(quote!()).expect("parses").path.is_none());
        assert_eq!(
            controller_args(quote!(path = "/api"))
                .expect("parses")
                .path
                .map(|p| p.value()),
            Some("/api".to_owned())
        );
        assert_eq!(
            controller_args(quote!(pth = "/api"))
                .expect_err("fails")
                .to_string(),
            "expected one of: string literal, `path`, `state`"
        );
        let args = controller_args(quote!("/notes", state = AppState)).expect("parses");
        assert_eq!(args.path.map(|p| p.value()), Some("/notes".to_owned()));
        assert!(args.state.is_some());
        let args =
            controller_args(quote!(state = crate::App<'static>, path = "/n")).expect("parses");
        assert!(args.state.is_some() && args.path.is_some());
        assert!(controller_args(quote!(state = A, state = B)).is_err());
        assert!(controller_args(quote!(path = "/a", "/b")).is_err());
    }
}

/// Properties of attribute parsing: any string literal as a path, `produces` or method parses
/// or fails with an error, never a panic; method names match case-insensitively.
#[cfg(test)]
mod props {
    use super::*;
    use proc_macro2::Span;
    use proptest::prelude::*;
    use quote::quote;

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof!["[{}/*:?#a-zA-Z\"; =\t\\\\é.-]{0,24}", any::<String>()]
    }

    fn parse(tokens: TokenStream) -> Attribute {
        Attribute::parse_outer
            .parse2(tokens)
            .expect("test attribute parses")
            .remove(0)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_literal_parses_or_fails_cleanly(path in any_text(), other in any_text()) {
            let path_lit = LitStr::new(&path, Span::call_site());
            let other_lit = LitStr::new(&other, Span::call_site());
            let verb = parse(quote!(#[get(#path_lit, produces = #other_lit)]));
            let parsed = route_attr(&verb, RouteKind::Verb(HttpMethod::Get)).expect("a verb parses");
            prop_assert_eq!(parsed.path.value(), path.clone());
            prop_assert_eq!(parsed.produces.map(|p| p.value()), Some(other.clone()));

            let mapping = parse(quote!(#[request_mapping(path = #path_lit, method = #other_lit)]));
            let parsed = route_attr(&mapping, RouteKind::RequestMapping);
            prop_assert_eq!(parsed.is_ok(), HttpMethod::from_name(&other).is_some());

            let args = controller_args(quote!(path = #path_lit)).expect("controller args parse");
            prop_assert_eq!(args.path.map(|p| p.value()), Some(path));
        }

        #[test]
        fn method_names_match_in_any_case(
            index in 0..HttpMethod::ALL.len(),
            upper in prop::collection::vec(any::<bool>(), 8),
            padding in "[ \t]{0,2}",
        ) {
            let method = HttpMethod::ALL[index];
            let name: String = method
                .as_str()
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, &up)| if up { c } else { c.to_ascii_lowercase() })
                .collect();
            let padded = format!("{padding}{name}{padding}");
            prop_assert_eq!(HttpMethod::from_name(&padded), Some(method));
        }
    }
}
