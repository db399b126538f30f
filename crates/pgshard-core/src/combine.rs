//! How an aggregate over a sharded table is split into per-shard partial aggregates and a
//! coordinator step that combines them.
//!
//! Only splits whose combined result is exactly what PostgreSQL computes over all rows are listed
//! (floating-point sums differ only in rounding order, as PostgreSQL's own parallel aggregation
//! does). Anything else (stddev, variance, ordered aggregates, user aggregates, …) has no recipe:
//! its rows are brought to the coordinator and aggregated there.

/// The argument type of an aggregate, as far as splitting cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgType {
    /// int2 or int4 (their sum is int8)
    SmallInt,
    /// int8 (its sum is numeric)
    BigInt,
    Numeric,
    Float8,
    /// A type whose sum has the argument's type and adds associatively (float4, money, interval).
    SelfSumming,
    /// Text and bytea (string_agg) or any type min/max/array_agg take.
    Other,
}

/// The coordinator side of a split aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recipe {
    /// The same aggregate over the partial results: min, max, bool_and, bool_or, every, sums
    /// of self-summing types, string_agg (with the same delimiter).
    Same,
    /// count: the counts are added (`pgshard.sum_counts`, 0 over no rows).
    SumCounts,
    /// sum of int2/int4: the int8 partial sums are added (`pgshard.sum_int8`).
    SumInt8,
    /// sum of int8/numeric: the numeric partial sums are added (`sum(numeric)`).
    SumNumeric,
    /// avg of an integer or numeric: partial `sum(x)` and `count(x)`, then the total sum
    /// divided by the total count in numeric, as PostgreSQL's own avg does.
    AvgExact,
    /// avg of float8: partial `sum(x)` and `count(x)`, divided in float8.
    AvgFloat8,
    /// array_agg: the partial arrays are concatenated (`pgshard.array_cat_agg`).
    ArrayCat,
}

/// The recipe for a (non-DISTINCT, unordered) aggregate `name(arg)`; `None` when it cannot be
/// split exactly.
pub fn recipe(name: &str, arg: ArgType) -> Option<Recipe> {
    use ArgType::*;
    Some(match (name, arg) {
        ("count", _) => Recipe::SumCounts,
        ("min" | "max" | "bool_and" | "bool_or" | "every" | "string_agg", _) => Recipe::Same,
        ("sum", SmallInt) => Recipe::SumInt8,
        ("sum", BigInt | Numeric) => Recipe::SumNumeric,
        ("sum", Float8 | SelfSumming) => Recipe::Same,
        ("avg", SmallInt | BigInt | Numeric) => Recipe::AvgExact,
        ("avg", Float8) => Recipe::AvgFloat8,
        ("array_agg", Other | SmallInt | BigInt | Numeric | Float8 | SelfSumming) => {
            Recipe::ArrayCat
        }
        _ => return None,
    })
}

/// The per-shard aggregates a recipe needs, by name: each runs with the original aggregate's
/// arguments and FILTER.
pub fn partials(recipe: Recipe, name: &str) -> &'static [&'static str] {
    match recipe {
        Recipe::AvgExact | Recipe::AvgFloat8 => &["sum", "count"],
        Recipe::SumCounts => &["count"],
        Recipe::SumInt8 | Recipe::SumNumeric => &["sum"],
        Recipe::ArrayCat => &["array_agg"],
        Recipe::Same => match name {
            "min" => &["min"],
            "max" => &["max"],
            "bool_and" => &["bool_and"],
            "bool_or" => &["bool_or"],
            "every" => &["every"],
            "string_agg" => &["string_agg"],
            _ => &["sum"],
        },
    }
}

/// Aggregates whose result does not depend on the collation's order, so a worker with another
/// locale gives the same answer (min and max compare, so they are not here).
pub fn collation_free(name: &str) -> bool {
    matches!(
        name,
        "count" | "sum" | "avg" | "bool_and" | "bool_or" | "every" | "string_agg" | "array_agg"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_splits_only() {
        assert_eq!(recipe("count", ArgType::Other), Some(Recipe::SumCounts));
        assert_eq!(recipe("sum", ArgType::SmallInt), Some(Recipe::SumInt8));
        assert_eq!(recipe("sum", ArgType::BigInt), Some(Recipe::SumNumeric));
        assert_eq!(recipe("sum", ArgType::SelfSumming), Some(Recipe::Same));
        assert_eq!(recipe("avg", ArgType::Numeric), Some(Recipe::AvgExact));
        assert_eq!(recipe("avg", ArgType::Float8), Some(Recipe::AvgFloat8));
        assert_eq!(recipe("max", ArgType::Other), Some(Recipe::Same));
        // avg(interval), avg(float4), sum(text) and the statistics have no exact split.
        assert_eq!(recipe("avg", ArgType::SelfSumming), None);
        assert_eq!(recipe("sum", ArgType::Other), None);
        for name in [
            "stddev",
            "variance",
            "var_pop",
            "json_agg",
            "percentile_cont",
        ] {
            assert_eq!(recipe(name, ArgType::Numeric), None, "{name}");
        }
    }

    #[test]
    fn partials_follow_recipes() {
        assert_eq!(partials(Recipe::AvgExact, "avg"), ["sum", "count"]);
        assert_eq!(partials(Recipe::Same, "max"), ["max"]);
        assert_eq!(partials(Recipe::Same, "sum"), ["sum"]);
        assert_eq!(partials(Recipe::SumCounts, "count"), ["count"]);
        assert!(!collation_free("min"));
        assert!(collation_free("string_agg"));
    }
}
