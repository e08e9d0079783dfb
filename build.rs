//! Rebuild when a migration is added or changed: `embed_migrations!` reads `migrations/`
//! at compile time, and cargo would not look there on its own.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
