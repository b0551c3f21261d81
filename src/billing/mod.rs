//! Getting paid through Stripe: request building and parsing ([`stripe`]), webhook
//! signatures ([`signature`]) and event processing ([`webhook`]), the claim page's rules
//! ([`claim`]), metered usage ([`meter`]), and the billing storage port ([`store`]). The
//! routes that use them are in `routes::checkout`, `routes::webhook` and `routes::claim`.

pub mod claim;
pub mod meter;
pub mod signature;
pub mod store;
pub mod stripe;
pub mod webhook;
