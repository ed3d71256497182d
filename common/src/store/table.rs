//! Creation of the manifest table and its two indexes (the layout is in [`super`]).

use super::{ManifestStore, OPEN_INDEX, TABLE_INDEX};
use crate::error::{Error, ItemRef};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus,
};
use std::time::Duration;

impl ManifestStore {
    /// Creates the table and its indexes if missing and waits until it is active. Idempotent.
    pub async fn ensure_table(&self) -> Result<bool, Error> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition is complete")
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("key schema element is complete")
        };
        let gsi = |name: &str, hash: &str, range: &str| {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(hash, KeyType::Hash))
                .key_schema(key(range, KeyType::Range))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .expect("index definition is complete")
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr("key"))
            .attribute_definitions(attr("etag"))
            .attribute_definitions(attr("open"))
            .attribute_definitions(attr("updated_at"))
            .attribute_definitions(attr("table"))
            .attribute_definitions(attr("status_at"))
            .key_schema(key("key", KeyType::Hash))
            .key_schema(key("etag", KeyType::Range))
            .global_secondary_indexes(gsi(OPEN_INDEX, "open", "updated_at"))
            .global_secondary_indexes(gsi(TABLE_INDEX, "table", "status_at"))
            .send()
            .await;
        let created = match created {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                false
            }
            Err(e) => return Err(self.err("create_table", ItemRef::none(), &e)),
        };
        for _ in 0..600 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| self.err("describe_table", ItemRef::none(), &e))?;
            let status = described.table().and_then(|t| t.table_status().cloned());
            if status == Some(TableStatus::Active) {
                return Ok(created);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(Error::Manifest {
            operation: "describe_table",
            table: self.table.clone(),
            item: ItemRef::none(),
            message: "table did not become active within 5 minutes".to_owned(),
            transient: true,
        })
    }
}
