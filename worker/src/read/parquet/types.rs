//! The PostgreSQL type of each top-level column of a Parquet schema, for a column
//! `new_columns = "add"` adds to a target: the type whose input reads back exactly the text
//! [`super::render`] writes for the column (the same [`render_of`] decides both). Pure; no IO.
//!
//! Integers by width (unsigned ones one size up; a `UINT_64` as `numeric(20,0)`), DECIMAL as
//! `numeric(p,s)`, FLOAT `real`, DOUBLE `double precision`, FLOAT16 `real`, BOOLEAN `boolean`,
//! strings and enums `text`, JSON `jsonb`, binary `bytea`, DATE `date`, TIME `time`, TIMESTAMP
//! `timestamp with time zone` when adjusted to UTC (the legacy converted types are), else
//! `timestamp`, INT96 `timestamp`, UUID `uuid`, INTERVAL `interval`, and lists, maps and
//! structs (rendered as JSON) `jsonb`.

use super::render::{render_of, Render};
use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
use parquet::schema::types::{ColumnDescriptor, SchemaDescriptor};

/// `(name, type)` of every top-level column, in schema order.
pub fn sql_types(schema: &SchemaDescriptor) -> Vec<(String, String)> {
    let root = schema.root_schema();
    let mut first_leaf = vec![None; root.get_fields().len()];
    for leaf in 0..schema.num_columns() {
        let r = schema.get_column_root_idx(leaf);
        if first_leaf[r].is_none() {
            first_leaf[r] = Some(leaf);
        }
    }
    root.get_fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let ty = match first_leaf[i] {
                Some(leaf) if field.is_primitive() => {
                    let d = schema.column(leaf);
                    if d.max_rep_level() > 0 {
                        "jsonb".to_owned()
                    } else {
                        sql_type_of(&d)
                    }
                }
                _ => "jsonb".to_owned(),
            };
            (field.name().to_owned(), ty)
        })
        .collect()
}

/// The type of a flat primitive column.
fn sql_type_of(d: &ColumnDescriptor) -> String {
    let physical = d.physical_type();
    let logical = d.logical_type_ref();
    let bits = match logical {
        Some(LogicalType::Integer(i)) => i.bit_width,
        _ => match d.converted_type() {
            ConvertedType::INT_8 | ConvertedType::UINT_8 => 8,
            ConvertedType::INT_16 | ConvertedType::UINT_16 => 16,
            ConvertedType::UINT_32 => 32,
            ConvertedType::UINT_64 => 64,
            _ if physical == PhysicalType::INT32 => 32,
            _ => 64,
        },
    };
    let ty = match render_of(d) {
        Render::Bool => "boolean",
        Render::Int if bits <= 16 => "smallint",
        Render::Int if bits <= 32 && physical == PhysicalType::INT32 => "integer",
        Render::Int => "bigint",
        Render::UInt if bits <= 16 => "integer",
        Render::UInt if bits <= 32 => "bigint",
        Render::UInt => "numeric(20,0)",
        Render::Decimal { scale } => {
            let precision = d.type_precision();
            return if precision > 0 && precision <= 1000 && scale >= 0 && scale <= precision {
                format!("numeric({precision},{scale})")
            } else {
                "numeric".to_owned()
            };
        }
        Render::Float if physical == PhysicalType::FLOAT => "real",
        Render::Float => "double precision",
        Render::Float16 => "real",
        Render::Date => "date",
        Render::Time(_) => "time",
        Render::Timestamp(_) => match logical {
            Some(LogicalType::Timestamp(t)) if !t.is_adjusted_to_u_t_c => "timestamp",
            _ => "timestamp with time zone",
        },
        Render::Int96 => "timestamp",
        Render::Text
            if matches!(logical, Some(LogicalType::Json))
                || d.converted_type() == ConvertedType::JSON =>
        {
            "jsonb"
        }
        Render::Text => "text",
        Render::Hex => "bytea",
        Render::Uuid => "uuid",
        Render::Interval => "interval",
    };
    ty.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn each_parquet_type_maps_to_the_column_its_text_reads_back_into() {
        let schema = parquet::schema::parser::parse_message_type(
            "message m {
               required int32 id;
               optional int32 i8 (INTEGER(8, true));
               optional int32 i16 (INT_16);
               optional int64 i64;
               optional int32 u16 (INTEGER(16, false));
               optional int32 u32 (UINT_32);
               optional int64 u64 (INTEGER(64, false));
               optional fixed_len_byte_array(16) dec (DECIMAL(38, 10));
               optional int64 small_dec (DECIMAL(12, 2));
               optional float f32;
               optional double f64;
               optional boolean flag;
               optional binary txt (STRING);
               optional binary doc (JSON);
               optional binary raw;
               optional int32 day (DATE);
               optional int64 clock (TIME(MICROS, true));
               optional int64 at_utc (TIMESTAMP(MICROS, true));
               optional int64 at_local (TIMESTAMP(MILLIS, false));
               optional int64 legacy (TIMESTAMP_MICROS);
               optional int96 old;
               optional fixed_len_byte_array(16) uid (UUID);
               repeated int32 numbers;
               optional group tags (LIST) { repeated group list { optional binary element (UTF8); } }
               optional group address { optional binary city (UTF8); }
             }",
        )
        .unwrap();
        let types = sql_types(&SchemaDescriptor::new(Arc::new(schema)));
        let want = [
            ("id", "integer"),
            ("i8", "smallint"),
            ("i16", "smallint"),
            ("i64", "bigint"),
            ("u16", "integer"),
            ("u32", "bigint"),
            ("u64", "numeric(20,0)"),
            ("dec", "numeric(38,10)"),
            ("small_dec", "numeric(12,2)"),
            ("f32", "real"),
            ("f64", "double precision"),
            ("flag", "boolean"),
            ("txt", "text"),
            ("doc", "jsonb"),
            ("raw", "bytea"),
            ("day", "date"),
            ("clock", "time"),
            ("at_utc", "timestamp with time zone"),
            ("at_local", "timestamp"),
            ("legacy", "timestamp with time zone"),
            ("old", "timestamp"),
            ("uid", "uuid"),
            ("numbers", "jsonb"),
            ("tags", "jsonb"),
            ("address", "jsonb"),
        ];
        let got: Vec<(&str, &str)> = types
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        assert_eq!(got, want);
    }
}
