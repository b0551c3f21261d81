//! Who is calling: the principal every request resolves to.

pub mod principal;
