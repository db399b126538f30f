//! How an aggregate over a sharded table is split into per-shard partial aggregates and a
//! coordinator step that combines them.
//!
//! Only splits whose combined result is exactly what PostgreSQL computes over all rows are listed
//! (floating-point sums differ only in rounding order, as PostgreSQL's own parallel aggregation
//! does). Anything else (stddev and variance of floats, ordered aggregates, user aggregates, …)
//! has no recipe: its rows are brought to the coordinator and aggregated there.

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
    /// variance / stddev (sample or population) of an integer or numeric: partial `count(x)`,
    /// `sum(x::numeric)` and `sum(x::numeric * x::numeric)`, whose totals are exact; then
    /// `pgshard.variance_of` does PostgreSQL's own numeric arithmetic on them
    /// ((N·Σx² − (Σx)²) / (N·(N−1)) at the same scales, and the square root at the quotient's
    /// scale).
    Variance { sample: bool, root: bool },
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
        ("variance" | "var_samp" | "stddev" | "stddev_samp", SmallInt | BigInt | Numeric) => {
            Recipe::Variance {
                sample: true,
                root: name.starts_with("stddev"),
            }
        }
        ("var_pop" | "stddev_pop", SmallInt | BigInt | Numeric) => Recipe::Variance {
            sample: false,
            root: name == "stddev_pop",
        },
        ("array_agg", Other | SmallInt | BigInt | Numeric | Float8 | SelfSumming) => {
            Recipe::ArrayCat
        }
        _ => return None,
    })
}

/// Partial `sum(x::numeric)`: not an aggregate's own name.
pub const SUM_NUMERIC: &str = "sum of numeric";
/// Partial `sum(x::numeric * x::numeric)`.
pub const SUM_SQUARES: &str = "sum of squares";

/// The per-shard aggregates a recipe needs, by name: each runs with the original aggregate's
/// arguments (or, for `SUM_NUMERIC` and `SUM_SQUARES`, expressions of them) and FILTER.
pub fn partials(recipe: Recipe, name: &str) -> &'static [&'static str] {
    match recipe {
        Recipe::AvgExact | Recipe::AvgFloat8 => &["sum", "count"],
        Recipe::SumCounts => &["count"],
        Recipe::SumInt8 | Recipe::SumNumeric => &["sum"],
        Recipe::ArrayCat => &["array_agg"],
        Recipe::Variance { .. } => &["count", SUM_NUMERIC, SUM_SQUARES],
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
        for name in ["json_agg", "percentile_cont", "regr_slope"] {
            assert_eq!(recipe(name, ArgType::Numeric), None, "{name}");
        }
        // Statistics split exactly over integers and numerics only (float partials would round
        // in another order than PostgreSQL's single pass).
        for name in ["stddev", "variance", "var_pop", "stddev_pop", "var_samp"] {
            assert_eq!(recipe(name, ArgType::Float8), None, "{name}");
        }
    }

    #[test]
    fn variance_recipes() {
        let v = |sample, root| Some(Recipe::Variance { sample, root });
        assert_eq!(recipe("variance", ArgType::SmallInt), v(true, false));
        assert_eq!(recipe("var_samp", ArgType::BigInt), v(true, false));
        assert_eq!(recipe("stddev", ArgType::Numeric), v(true, true));
        assert_eq!(recipe("stddev_samp", ArgType::Numeric), v(true, true));
        assert_eq!(recipe("var_pop", ArgType::Numeric), v(false, false));
        assert_eq!(recipe("stddev_pop", ArgType::SmallInt), v(false, true));
        assert_eq!(
            partials(
                Recipe::Variance {
                    sample: true,
                    root: true
                },
                "stddev"
            ),
            ["count", SUM_NUMERIC, SUM_SQUARES]
        );
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
