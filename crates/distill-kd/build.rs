//! Links libtorch's run-time path into this crate's tests and examples, only with the `tch`
//! feature: without it nothing here touches libtorch (see the crate doc, "Features").

fn main() {
    #[cfg(feature = "tch")]
    libtorch_env::emit_link_args();
}
