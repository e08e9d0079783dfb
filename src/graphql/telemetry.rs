//! GraphQL operations in the metrics: how many by name and outcome, how long they took, and
//! how many subscriptions are open.

use std::sync::Arc;
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextSubscribe,
};
use async_graphql::{Response, Value};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::telemetry::{Open, operation_label};

/// The extension factory to register on the schema.
pub struct Metrics;

impl ExtensionFactory for Metrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Metrics)
    }
}

/// `ok`, or the `extensions.code` of the first error.
fn outcome(response: &Response) -> String {
    match response.errors.first() {
        None => "ok".into(),
        Some(error) => match error.extensions.as_ref().and_then(|e| e.get("code")) {
            Some(Value::String(code)) => code.clone(),
            _ => "error".into(),
        },
    }
}

#[async_trait::async_trait]
impl Extension for Metrics {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let started = Instant::now();
        let response = next.run(ctx, operation_name).await;
        let operation = operation_label(operation_name);
        let outcome = outcome(&response);
        metrics::histogram!("topup_graphql_operation_duration_seconds", "operation" => operation.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("topup_graphql_operations_total", "operation" => operation, "outcome" => outcome)
            .increment(1);
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let open = Open::new("topup_graphql_subscriptions_open");
        next.run(ctx, stream)
            .map(move |response| {
                let _open = &open;
                metrics::counter!("topup_graphql_subscription_messages_total", "outcome" => outcome(&response))
                    .increment(1);
                response
            })
            .boxed()
    }
}
