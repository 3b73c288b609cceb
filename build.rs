//! Rebuilds the crate when a text of `locales/` changes: `rust_i18n::i18n!` reads the files
//! while compiling, and cargo does not know it does.

fn main() {
    println!("cargo:rerun-if-changed=locales");
}
