//! The values every layer speaks: money, order numbers, order statuses and kinds, payment
//! channels and idempotency keys. Each can only be built valid (values read back from the
//! database are trusted: its `CHECK` constraints admitted them). Nothing here does I/O.

mod idempotency;
mod money;
mod order;

pub use idempotency::IdempotencyKey;
pub use money::Money;
pub use order::{Channel, OrderKind, OrderNo, OrderStatus, ReviewReason};
