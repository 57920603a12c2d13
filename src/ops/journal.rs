//! Which store holds a destination's sync journal. The entries themselves are written by [`crate::journal`]; this
//! only picks the store, because that takes the profile (a Glacier vault keeps its journal in the S3 bucket).

use std::sync::Arc;

use super::{Ctx, OpsError};
use crate::model::Destination;
use crate::storage::Backend;

/// The store holding the journal (and index sidecars) for backups in `destination`: the store itself, except for
/// S3, where it is the same bucket without the profile's archive storage class (journal entries must stay readable),
/// and Glacier, whose journal sits in the profile's S3 bucket (`None` when the profile has none or it cannot be
/// opened: Glacier backups are then not journaled).
pub fn journal_for(
    ctx: &Ctx,
    destination: Destination,
    backend: &Arc<dyn Backend>,
) -> Result<Option<Arc<dyn Backend>>, OpsError> {
    match destination {
        Destination::S3 => return Ok(Some(Arc::new(ctx.stores().s3_hot()?))),
        Destination::Glacier => {}
        Destination::Local | Destination::Swift => return Ok(Some(backend.clone())),
    }
    if ctx.profile.s3_bucket.as_deref().unwrap_or_default().is_empty() {
        return Ok(None);
    }
    match ctx.stores().s3_hot() {
        Ok(s) => Ok(Some(Arc::new(s))),
        // Glacier works without S3; its backups then go unjournaled.
        Err(e) => {
            ctx.reporter.warn(&format!("glacier backups are not journaled for sync: the s3 bucket is unusable ({e})"));
            Ok(None)
        }
    }
}
