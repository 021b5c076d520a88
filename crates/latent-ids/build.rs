fn main() {
    libtorch_env::emit_link_args();
}
