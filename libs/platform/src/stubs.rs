//! RPCs whose contract is published but whose implementation lands with a later issue answer
//! `UNIMPLEMENTED` naming that issue, instead of leaving the service uncompilable.

/// Implements the listed RPCs of a tonic service trait as `UNIMPLEMENTED`. Use inside the
/// `#[tonic::async_trait] impl …Service for …` block:
///
/// ```ignore
/// loyalty_platform::rpcs_not_yet_implemented! {
///     "lands with issue #4 (identity and cards)";
///     list_partners(pb::ListPartnersRequest) -> pb::ListPartnersResponse;
/// }
/// ```
#[macro_export]
macro_rules! rpcs_not_yet_implemented {
    ($why:literal; $($method:ident($req:ty) -> $resp:ty;)*) => {
        $(
            // The shape `#[async_trait]` gives trait methods, written out because attribute
            // macros do not see methods produced by a macro inside the impl block.
            fn $method<'life0, 'async_trait>(
                &'life0 self,
                _request: ::tonic::Request<$req>,
            ) -> ::std::pin::Pin<
                Box<
                    dyn ::std::future::Future<
                            Output = ::std::result::Result<::tonic::Response<$resp>, ::tonic::Status>,
                        > + Send
                        + 'async_trait,
                >,
            >
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move {
                    Err(::tonic::Status::unimplemented(concat!(
                        stringify!($method),
                        " is not available yet: it ",
                        $why
                    )))
                })
            }
        )*
    };
}
