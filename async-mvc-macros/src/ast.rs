//! The `#[async_controller]` input as the macro sees it: the user's item with the route
//! attributes taken off, and one [`Route`] per route attribute.

use proc_macro2::TokenStream;
use syn::{Attribute, ImplItem, Item, ItemImpl, Signature};

use crate::attr::{self, ControllerArgs, RouteAttr, RouteKind};
use crate::errors::Errors;

/// The attribute `#[async_controller]` adds, last, to its methods that keep attributes other
/// than docs: a route attribute that expands later on such a method was imported under another
/// name, and says so (`expand::misplaced_route`).
pub(crate) const CONTROLLER_MARKER: &str = "__async_mvc_controller_method";

/// What `#[async_controller]` was put on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `impl Type { .. }`: the only valid target.
    Inherent,
    /// `impl Trait for Type { .. }`.
    TraitImpl,
    /// A struct, a function, a trait, ….
    Other,
}

/// One route: a route attribute and the method it is on.
#[derive(Debug)]
pub(crate) struct Route {
    /// The parsed attribute.
    pub(crate) attr: RouteAttr,
    /// The method's signature.
    pub(crate) sig: Signature,
    /// The method's `#[cfg(..)]` attributes, repeated on the generated code for the route.
    pub(crate) cfgs: Vec<Attribute>,
}

/// The parsed `#[async_controller]` input.
#[derive(Debug)]
pub(crate) struct Input {
    /// The controller's arguments; `None` when they did not parse (the error is reported).
    pub(crate) args: Option<ControllerArgs>,
    /// The user's item, with every route attribute on its impl items removed: what the macro
    /// emits in any case.
    pub(crate) item: Item,
    /// What the item is.
    pub(crate) shape: Shape,
    /// The routes, in source order (only for [`Shape::Inherent`]).
    pub(crate) routes: Vec<Route>,
    /// Route attributes found on impl items that are not methods (consts, types, macros).
    pub(crate) misplaced: Vec<Attribute>,
}

impl Input {
    /// Splits `item` into the plain item and its routes. Attribute-argument syntax errors go to
    /// `errors`; the attribute concerned then yields no route.
    pub(crate) fn new(args: TokenStream, mut item: Item, errors: &mut Errors) -> Input {
        let args = match attr::controller_args(args) {
            Ok(args) => Some(args),
            Err(err) => {
                errors.push(err);
                None
            }
        };
        let mut routes = Vec::new();
        let mut misplaced = Vec::new();
        let shape = match &mut item {
            Item::Impl(block) => {
                let shape = if block.trait_.is_some() {
                    Shape::TraitImpl
                } else {
                    Shape::Inherent
                };
                collect_routes(block, shape, &mut routes, &mut misplaced, errors);
                shape
            }
            _ => Shape::Other,
        };
        Input {
            args,
            item,
            shape,
            routes,
            misplaced,
        }
    }

    /// The impl block, when the item is one.
    pub(crate) fn impl_block(&self) -> Option<&ItemImpl> {
        match &self.item {
            Item::Impl(block) => Some(block),
            _ => None,
        }
    }
}

/// Removes the route attributes from `attrs` and returns them with their kind.
fn take_route_attrs(attrs: &mut Vec<Attribute>) -> Vec<(Attribute, RouteKind)> {
    let mut taken = Vec::new();
    attrs.retain(|attr| match RouteKind::of_attr(attr) {
        Some(kind) => {
            taken.push((attr.clone(), kind));
            false
        }
        None => true,
    });
    taken
}

fn collect_routes(
    block: &mut ItemImpl,
    shape: Shape,
    routes: &mut Vec<Route>,
    misplaced: &mut Vec<Attribute>,
    errors: &mut Errors,
) {
    for item in &mut block.items {
        let attrs = match item {
            ImplItem::Fn(f) => &mut f.attrs,
            ImplItem::Const(c) => &mut c.attrs,
            ImplItem::Type(t) => &mut t.attrs,
            ImplItem::Macro(m) => &mut m.attrs,
            // Verbatim tokens have no parsed attributes; rustc reports what they hold.
            _ => continue,
        };
        let taken = take_route_attrs(attrs);
        if shape != Shape::Inherent {
            // The item itself is reported; the attributes are only stripped.
            continue;
        }
        let ImplItem::Fn(method) = item else {
            misplaced.extend(taken.into_iter().map(|(attr, _)| attr));
            continue;
        };
        if method.attrs.iter().any(|attr| !attr.path().is_ident("doc")) {
            let marker = syn::Ident::new(CONTROLLER_MARKER, proc_macro2::Span::call_site());
            method
                .attrs
                .push(syn::parse_quote!(#[::async_mvc::__private::#marker]));
        }
        let cfgs: Vec<Attribute> = method
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg"))
            .cloned()
            .collect();
        for (attr, kind) in taken {
            match attr::route_attr(&attr, kind) {
                Ok(attr) => routes.push(Route {
                    attr,
                    sig: method.sig.clone(),
                    cfgs: cfgs.clone(),
                }),
                Err(err) => errors.push(err),
            }
        }
    }
}
