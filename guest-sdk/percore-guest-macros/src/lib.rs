//! `#[handler]`: turns a plain function into the `edge:handler` guest export.

use proc_macro::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType};

/// Marks the function that handles every request of this guest.
///
/// ```ignore
/// #[percore_guest::handler]
/// fn handle(req: percore_guest::Request) -> percore_guest::Response { ... }
/// ```
///
/// The function takes one `Request` and returns anything that implements `IntoResponse`
/// (a `Response`, an `http::Response`, or a `Result` of one). A guest has exactly one handler.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    match expand(attr.into(), item.into()) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn expand(
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> syn::Result<proc_macro2::TokenStream> {
    if !attr.is_empty() {
        return Err(syn::Error::new_spanned(
            attr,
            "#[handler] takes no arguments",
        ));
    }
    let func: ItemFn = syn::parse2(item)?;
    let sig = &func.sig;
    if let Some(asyncness) = &sig.asyncness {
        return Err(syn::Error::new_spanned(
            asyncness,
            "a #[handler] function cannot be async: it runs to completion for each request",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &sig.generics,
            "a #[handler] function cannot be generic",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            variadic,
            "a #[handler] function cannot be variadic",
        ));
    }
    let arg_ty = match sig.inputs.len() {
        1 => match &sig.inputs[0] {
            FnArg::Typed(arg) => arg.ty.clone(),
            FnArg::Receiver(receiver) => {
                return Err(syn::Error::new_spanned(
                    receiver,
                    "a #[handler] must be a free function, not a method",
                ));
            }
        },
        0 => {
            return Err(syn::Error::new(
                sig.paren_token.span.join(),
                "a #[handler] function takes the request: `fn handle(req: Request) -> Response`",
            ));
        }
        _ => {
            return Err(syn::Error::new_spanned(
                &sig.inputs,
                "a #[handler] function takes exactly one argument, the `Request`",
            ));
        }
    };
    let ret_ty = match &sig.output {
        ReturnType::Type(_, ty) => ty.clone(),
        ReturnType::Default => {
            return Err(syn::Error::new(
                sig.ident.span(),
                "a #[handler] function must return a response, e.g. `-> Response`",
            ));
        }
    };
    let name = &sig.ident;
    // Calls placed at the user's spans, so a wrong type is reported where it was written.
    let call = quote_spanned! {arg_ty.span()=> #name(request) };
    let convert = quote_spanned! {ret_ty.span()=>
        ::percore_guest::IntoResponse::into_response(#call)
    };
    Ok(quote! {
        #func

        const _: () = {
            struct __PercoreHandler;

            impl ::percore_guest::__private::Guest for __PercoreHandler {
                fn input_region(min_capacity: u32) -> ::percore_guest::__private::Region {
                    ::percore_guest::__private::input_region(min_capacity)
                }

                fn handle_region(
                    head_len: u32,
                    body_len: u32,
                ) -> ::percore_guest::__private::WitResponse {
                    ::percore_guest::__private::handle_region(head_len, body_len, |request| {
                        #convert
                    })
                }

                fn handle(
                    request: ::percore_guest::__private::WitRequest,
                ) -> ::percore_guest::__private::WitResponse {
                    ::percore_guest::__private::handle_portable(request, |request| {
                        #convert
                    })
                }
            }

            ::percore_guest::bindings::__export_edge_handler!(
                __PercoreHandler with_types_in ::percore_guest::bindings
            );
        };
    })
}
