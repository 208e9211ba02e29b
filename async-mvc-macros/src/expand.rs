//! Code generation: the user's impl block (route attributes removed) and
//! `impl ::async_mvc::Controller` building one axum `Router` for all routes.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, Item, ItemImpl, LitStr, ReturnType, Type};

use crate::ast::{Input, Route, CONTROLLER_MARKER};
use crate::errors::{self, Errors};
use crate::path;

/// What a macro emits: code, plus the errors to report with it.
#[derive(Debug)]
pub(crate) struct Output {
    /// The generated code; with errors, at least the user's item, so that the rest of the crate
    /// still compiles.
    pub(crate) tokens: TokenStream,
    /// Every error found, combined.
    pub(crate) error: Option<syn::Error>,
}

/// `#[async_controller(args)] input`.
pub(crate) fn controller(args: TokenStream, input: TokenStream) -> Output {
    let item: Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(error) => {
            return Output {
                tokens: input,
                error: Some(error),
            }
        }
    };
    let mut errors = Errors::default();
    let input = Input::new(args, item, &mut errors);
    let implementable = input.validate(&mut errors);
    let error = errors.finish();

    let item = &input.item;
    let controller_impl = match input.impl_block() {
        Some(block) if implementable => {
            let state = input.args.as_ref().and_then(|args| args.state.as_ref());
            let routes = if error.is_none() {
                routes_body(&input, &state_tokens(state))
            } else {
                // Keeps `Controller` implemented, so that the errors above are the only ones.
                quote!(::async_mvc::__private::Router::new())
            };
            Some(controller_impl(block, routes, state))
        }
        _ => None,
    };
    Output {
        tokens: quote!(#item #controller_impl),
        error,
    }
}

/// A route attribute expanded on its own: it is not on a method of an `#[async_controller]`
/// impl (which would have removed it), or it is, under a name the controller does not know
/// (`use async_mvc::get as get_route;`), which the marker the controller leaves on such
/// methods tells. Re-emits the item unchanged, with the error.
pub(crate) fn misplaced_route(name: &str, input: TokenStream) -> Output {
    let message = if has_controller_marker(&input) {
        errors::renamed_route(name)
    } else {
        errors::MISPLACED_ROUTE.to_owned()
    };
    Output {
        tokens: input,
        error: Some(syn::Error::new(Span::call_site(), message)),
    }
}

/// Whether `item`'s outer attributes include the [`CONTROLLER_MARKER`].
fn has_controller_marker(item: &TokenStream) -> bool {
    let mut tokens = item.clone().into_iter().peekable();
    while let Some(token) = tokens.next() {
        let TokenTree::Punct(punct) = &token else {
            // Outer attributes come first; past them, the marker can't be one.
            return false;
        };
        if punct.as_char() != '#' {
            return false;
        }
        let Some(TokenTree::Group(group)) = tokens.next() else {
            return false;
        };
        let named = group
            .stream()
            .into_iter()
            .any(|tt| matches!(&tt, TokenTree::Ident(ident) if ident == CONTROLLER_MARKER));
        if named {
            return true;
        }
    }
    false
}

/// The state type the routes are for: the controller's `state = ..`, else the generic `__S`.
fn state_tokens(state: Option<&Type>) -> TokenStream {
    match state {
        Some(state) => state.to_token_stream(),
        None => quote!(__S),
    }
}

fn controller_impl(block: &ItemImpl, routes: TokenStream, state: Option<&Type>) -> TokenStream {
    let self_ty = &block.self_ty;
    match state {
        Some(state) => quote! {
            impl ::async_mvc::Controller<#state> for #self_ty {
                fn routes(
                    self: ::async_mvc::__private::Arc<Self>,
                ) -> ::async_mvc::__private::Router<#state> {
                    #routes
                }
            }
        },
        None => quote! {
            impl<__S> ::async_mvc::Controller<__S> for #self_ty
            where
                __S: ::core::clone::Clone + ::core::marker::Send + ::core::marker::Sync + 'static,
            {
                fn routes(
                    self: ::async_mvc::__private::Arc<Self>,
                ) -> ::async_mvc::__private::Router<__S> {
                    #routes
                }
            }
        },
    }
}

/// The body of `Controller::routes` for valid input:
/// `Router::new().route(path, method_router)…` with one `MethodRouter` per path.
fn routes_body(input: &Input, state: &TokenStream) -> TokenStream {
    let base = input
        .args
        .as_ref()
        .and_then(|args| args.path.as_ref())
        .map(LitStr::value);

    // Full path (and the span of its first literal) -> its routes, in source order.
    let mut groups: Vec<(String, Span, Vec<&Route>)> = Vec::new();
    for route in &input.routes {
        let full = path::join(base.as_deref(), &route.attr.path.value());
        match groups.iter_mut().find(|(path, _, _)| *path == full) {
            Some((_, _, routes)) => routes.push(route),
            None => groups.push((full, route.attr.path.span(), vec![route])),
        }
    }

    let methods = format_ident!("__methods", span = Span::mixed_site());
    let route_calls = groups.iter().map(|(full, span, routes)| {
        let path = LitStr::new(full, *span);
        let registrations = routes.iter().map(|route| {
            let cfgs = &route.cfgs;
            let handler = handler(route);
            match route.attr.method {
                Some(method) => {
                    let filter = format_ident!("{}", method.as_str());
                    quote! {
                        #(#cfgs)*
                        let #methods = #methods
                            .on(::async_mvc::__private::MethodFilter::#filter, #handler);
                    }
                }
                None => quote! {
                    #(#cfgs)*
                    let #methods = #methods.fallback(#handler);
                },
            }
        });
        quote! {
            .route(#path, {
                let #methods = ::async_mvc::__private::MethodRouter::<
                    #state,
                    ::core::convert::Infallible,
                >::new();
                #(#registrations)*
                #methods
            })
        }
    });

    let checks = input
        .routes
        .iter()
        .map(|route| extractor_checks(route, state));
    quote! {{
        #(#checks)*
        ::async_mvc::__private::Router::new()
            #(#route_calls)*
    }}
}

/// One check per argument, spanned on its type, that it is an extractor for `state`: a type
/// that is not is reported at the argument (by rustc, with what it lacks), not as an
/// unsatisfied `Handler` bound on the whole attribute. All but the last argument must be
/// `FromRequestParts`, as axum requires; the last may be a body extractor.
fn extractor_checks(route: &Route, state: &TokenStream) -> TokenStream {
    let types: Vec<&Type> = typed_args(route).collect();
    let cfgs = &route.cfgs;
    let checks = types.iter().enumerate().map(|(i, ty)| {
        if i + 1 == types.len() {
            quote_spanned!(ty.span()=>
                #(#cfgs)*
                let () = ::async_mvc::__private::extractor::<#ty, #state, _>();
            )
        } else {
            quote_spanned!(ty.span()=>
                #(#cfgs)*
                let () = ::async_mvc::__private::parts_extractor::<#ty, #state>();
            )
        }
    });
    quote!(#(#checks)*)
}

/// The types of a routed method's arguments, receiver excluded.
fn typed_args(route: &Route) -> impl Iterator<Item = &Type> {
    route.sig.inputs.iter().filter_map(|arg| match arg {
        FnArg::Typed(arg) => Some(&*arg.ty),
        FnArg::Receiver(_) => None,
    })
}

/// `{ let this = Arc::clone(&self); move |args..| async move { respond(Self::method(&this, args..)) } }`
fn handler(route: &Route) -> TokenStream {
    let this = format_ident!("__this", span = Span::mixed_site());
    let types: Vec<&Type> = typed_args(route).collect();
    let args: Vec<syn::Ident> = (0..types.len())
        .map(|i| format_ident!("__arg{}", i, span = Span::mixed_site()))
        .collect();
    let method = &route.sig.ident;
    let awaited = route.sig.asyncness.map(|_| quote!(.await));
    let value = quote!(Self::#method(&*#this, #(#args),*) #awaited);
    let response = match &route.attr.produces {
        Some(media_type) => {
            let respond = respond_fn(route, quote!(respond_producing));
            quote! {{
                const __PRODUCES: ::async_mvc::__private::HeaderValue =
                    ::async_mvc::__private::HeaderValue::from_static(#media_type);
                #respond(#value, __PRODUCES)
            }}
        }
        None => {
            let respond = respond_fn(route, quote!(respond));
            quote!(#respond(#value))
        }
    };
    // Spanned on the method's name: if the closure is no `Handler`, rustc says so there.
    quote_spanned! {route.sig.ident.span()=> {
        let #this = ::async_mvc::__private::Arc::clone(&self);
        move |#(#args: #types),*| async move { #response }
    }}
}

/// `::async_mvc::__private::#name`, the function that renders the method's return value. When
/// the return type can be named, it is given explicitly and the path is spanned on it: a return
/// type that is no `IntoResponse` is reported once, at the user's return type. Not for `()` (the
/// default, and a response) nor for types with `impl Trait`, which can't be named.
fn respond_fn(route: &Route, name: TokenStream) -> TokenStream {
    match &route.sig.output {
        ReturnType::Type(_, ty)
            if !matches!(&**ty, Type::Tuple(t) if t.elems.is_empty())
                && !mentions_impl(ty.to_token_stream()) =>
        {
            quote_spanned!(ty.span()=> ::async_mvc::__private::#name::<#ty>)
        }
        _ => quote!(::async_mvc::__private::#name),
    }
}

fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|tt| match tt {
        TokenTree::Ident(ident) => ident == "impl",
        TokenTree::Group(group) => mentions_impl(group.stream()),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(args: TokenStream, input: TokenStream) -> Output {
        controller(args, input)
    }

    #[test]
    fn expands_valid_controller() {
        let out = expand(
            quote!(path = "/api"),
            quote! {
                impl Orders {
                    #[get("/orders/{id}")]
                    async fn one(&self, Path(id): Path<String>) -> String { id }
                    #[post("/orders/{id}", produces = "text/plain")]
                    fn two(&self) -> &'static str { "x" }
                    fn helper(&self) {}
                }
            },
        );
        assert!(out.error.is_none());
        let code = out.tokens.to_string();
        assert!(code.contains("\"/api/orders/{id}\""));
        assert_eq!(code.matches(". route (").count(), 1, "{code}");
        assert!(code.contains("MethodFilter :: GET"));
        assert!(code.contains("MethodFilter :: POST"));
        assert!(code.contains("respond_producing"));
        assert!(!code.contains("# [get"));
    }

    #[test]
    fn collects_every_error_and_keeps_the_item() {
        let out = expand(
            quote!(path = "api"),
            quote! {
                impl Orders {
                    #[get("x")]
                    fn a(self) {}
                    #[get("/y", produces = "json")]
                    fn b(&mut self) {}
                }
            },
        );
        let error = out.error.expect("errors");
        assert_eq!(error.into_iter().count(), 5);
        let code = out.tokens.to_string();
        assert!(code.contains("fn a (self)"));
        assert!(!code.contains("# [get"));
    }

    #[test]
    fn never_panics_on_odd_input() {
        for (args, input) in [
            (quote!(path), quote!(impl X {})),
            (quote!(= "/"), quote!(impl X {})),
            (
                quote!(),
                quote!(
                    struct S;
                ),
            ),
            (
                quote!(),
                quote!(
                    impl<T> X<T> {}
                ),
            ),
            (quote!(), quote!(impl T for X {})),
            (quote!(), quote!(not an item)),
            (
                quote!(),
                quote!(impl X { #[get] const C: u8 = 0; #[get = "/"] fn f(&self) {} }),
            ),
            (
                quote!(),
                quote!(impl X { #[request_mapping(method = "GET", path = "/{")] fn f(&self) {} }),
            ),
        ] {
            let out = expand(args, input);
            assert!(out.error.is_some());
        }
    }
}
