//! The values every layer speaks: money, order numbers, order statuses and kinds, payment
//! channels, refund numbers and statuses, and idempotency keys. Each can only be built valid
//! (values read back from the database are trusted: its `CHECK` constraints admitted them).
//! Nothing here does I/O.

mod idempotency;
mod money;
mod order;
mod refund;

pub use idempotency::IdempotencyKey;
pub use money::Money;
pub use order::{Channel, OrderKind, OrderNo, OrderStatus, ReviewReason};
pub use refund::{RefundNo, RefundStatus};
