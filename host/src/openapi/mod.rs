//! OpenAPI 3 in both directions: importing a document's callbacks as
//! templates, and describing the webhooks a tenant's receivers get.

pub mod import;
pub mod receivers;
