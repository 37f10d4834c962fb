mod global;
pub use global::*;

mod config;
pub use config::*;

mod api;
pub use api::*;

mod local;

// (catgan: the crate's own tests are left out of this copy; see patches/README.md.)
