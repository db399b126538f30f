//! Deparsing: turning planner expressions into SQL that a worker runs on a shard table.
//!
//! Only what gives the same answer on the worker is pushed: columns of the scanned table,
//! constants of built-in types, and built-in immutable operators and functions over them.
//! A comparison under a collation other than "C" is pushed only when it is an equality (which
//! does not depend on the collation's order, and workers may sort differently). Parameters and
//! other expressions that use no column and nothing volatile (`now()`, `current_user`, `$1 + 1`)
//! are evaluated once on the coordinator when the statement runs and sent as literals.
//! Anything else stays on the coordinator.

use std::ffi::{c_char, c_void};

use pgrx::prelude::*;

use crate::encryption;
use crate::metadata::{cstr, quote_ident};

/// Objects with oids below this are built into PostgreSQL (FirstNormalObjectId), so a worker of
/// the same major version has them with the same meaning.
const FIRST_NORMAL_OBJECT_ID: u32 = 16384;
const C_COLLATION_OID: u32 = 950;
const POSIX_COLLATION_OID: u32 = 951;

/// SQL text with holes for values computed on the coordinator at execution time:
/// `parts[0] value[0] parts[1] … value[n-1] parts[n]`.
#[derive(Debug, Clone)]
pub struct Sql {
    pub parts: Vec<String>,
    pub values: Vec<*mut pg_sys::Node>,
}

impl Default for Sql {
    fn default() -> Self {
        Sql {
            parts: vec![String::new()],
            values: Vec::new(),
        }
    }
}

impl Sql {
    pub fn push(&mut self, text: &str) {
        self.parts.last_mut().expect("never empty").push_str(text);
    }

    fn push_value(&mut self, expr: *mut pg_sys::Node) {
        self.values.push(expr);
        self.parts.push(String::new());
    }

    /// Appends another fragment, holes included.
    pub fn append(&mut self, other: Sql) {
        let mut parts = other.parts.into_iter();
        self.push(&parts.next().expect("never empty"));
        self.values.extend(other.values);
        self.parts.extend(parts);
    }

    /// The SQL with each hole filled by `render(index)`.
    pub fn render(parts: &[String], mut render: impl FnMut(usize) -> String) -> String {
        let mut out = parts[0].clone();
        for (i, part) in parts[1..].iter().enumerate() {
            out.push_str(&render(i));
            out.push_str(part);
        }
        out
    }
}

/// Deparses expressions over one table, whose columns are known by range-table index `varno`.
pub struct Deparser {
    pub varno: u32,
    pub relid: pg_sys::Oid,
    /// Range-table index of INSERT … ON CONFLICT's EXCLUDED row (0 when there is none).
    pub excluded: u32,
    /// Tables joined to the first (range-table index and oid); columns are then qualified by
    /// the aliases `r<index>`.
    pub joined: Vec<(u32, pg_sys::Oid)>,
    /// Qualify the first table's columns too (`r<varno>.column`): in ON CONFLICT DO UPDATE,
    /// where EXCLUDED has the same column names.
    pub qualify_first: bool,
    /// The subject of the simple CASE being deparsed (`CASE subject WHEN …`), which its WHEN
    /// conditions compare through a placeholder (CaseTestExpr); null outside one.
    pub(crate) case_subject: std::cell::Cell<*mut pg_sys::Node>,
}

impl Deparser {
    /// A deparser for one table scanned as range-table entry `varno`.
    pub fn table(varno: u32, relid: pg_sys::Oid) -> Self {
        Deparser {
            varno,
            relid,
            excluded: 0,
            joined: Vec::new(),
            qualify_first: false,
            case_subject: std::cell::Cell::new(std::ptr::null_mut()),
        }
    }

    /// A deparser for joined tables (range-table index and oid, the first one unqualified in
    /// `varno`/`relid`), whose columns are written `r<index>.column`.
    pub fn tables(tables: &[(u32, pg_sys::Oid)]) -> Self {
        Deparser {
            joined: tables[1..].to_vec(),
            ..Deparser::table(tables[0].0, tables[0].1)
        }
    }

    /// The SQL of `node`, or `None` when it cannot run on a worker.
    ///
    /// # Safety
    /// `node` must be a valid planner expression.
    pub unsafe fn deparse(&self, node: *mut pg_sys::Node) -> Option<Sql> {
        let mut sql = Sql::default();
        self.expr(node, &mut sql).then_some(sql)
    }

    unsafe fn expr(&self, node: *mut pg_sys::Node, out: &mut Sql) -> bool {
        if node.is_null() {
            return false;
        }
        // A Var-free, non-volatile expression is computed once on the coordinator: it is
        // correct whatever it calls (user functions, stable ones), and cheap.
        if coordinator_evaluable(node) && !matches!((*node).type_, pg_sys::NodeTag::T_Const) {
            out.push_value(node);
            return true;
        }
        match (*node).type_ {
            pg_sys::NodeTag::T_Var => {
                let var = node as *mut pg_sys::Var;
                let varno = (*var).varno as u32;
                let excluded = self.excluded != 0 && varno == self.excluded;
                let joined = self.joined.iter().find(|(v, _)| *v == varno).copied();
                if (varno != self.varno && !excluded && joined.is_none())
                    || (*var).varlevelsup != 0
                    || (*var).varattno <= 0
                {
                    return false;
                }
                let relid = joined.map_or(self.relid, |(_, relid)| relid);
                let name = cstr(pg_sys::get_attname(relid, (*var).varattno, false));
                if excluded {
                    out.push("excluded.");
                } else if !self.joined.is_empty() || self.qualify_first {
                    out.push(&format!("r{varno}."));
                }
                out.push(&quote_ident(&name));
                true
            }
            pg_sys::NodeTag::T_Const => {
                let c = node as *mut pg_sys::Const;
                if !builtin(worker_type((*c).consttype, -1).0)
                    && encryption::kind_of_type((*c).consttype).is_none()
                {
                    return false;
                }
                out.push(&literal(
                    (*c).constvalue,
                    (*c).constisnull,
                    (*c).consttype,
                    (*c).consttypmod,
                ));
                true
            }
            pg_sys::NodeTag::T_OpExpr => {
                let op = node as *mut pg_sys::OpExpr;
                if let Some(equal) = encryption::tag_comparison((*op).opfuncid) {
                    return self.tag_comparison(equal, (*op).args, None, out);
                }
                self.operator(
                    (*op).opno,
                    (*op).opfuncid,
                    (*op).inputcollid,
                    (*op).args,
                    None,
                    out,
                )
            }
            pg_sys::NodeTag::T_ScalarArrayOpExpr => {
                let op = node as *mut pg_sys::ScalarArrayOpExpr;
                let quantifier = if (*op).useOr { "ANY" } else { "ALL" };
                if let Some(equal) = encryption::tag_comparison((*op).opfuncid) {
                    return self.tag_comparison(equal, (*op).args, Some(quantifier), out);
                }
                self.operator(
                    (*op).opno,
                    (*op).opfuncid,
                    (*op).inputcollid,
                    (*op).args,
                    Some(quantifier),
                    out,
                )
            }
            pg_sys::NodeTag::T_FuncExpr => {
                let f = node as *mut pg_sys::FuncExpr;
                if (*f).funcvariadic
                    || (*f).funcretset
                    || !builtin((*f).funcid)
                    || pg_sys::func_volatile((*f).funcid) as u8 != b'i'
                    || !collation_safe((*f).inputcollid, (*f).funcid, false)
                {
                    return false;
                }
                let name = cstr(pg_sys::get_func_name((*f).funcid));
                out.push(&format!("pg_catalog.{}(", quote_ident(&name)));
                if !self.list((*f).args, ", ", out) {
                    return false;
                }
                out.push(")");
                true
            }
            pg_sys::NodeTag::T_BoolExpr => {
                let b = node as *mut pg_sys::BoolExpr;
                let args = list_nodes((*b).args);
                match (*b).boolop {
                    pg_sys::BoolExprType::NOT_EXPR => {
                        out.push("(NOT ");
                        if !self.expr(args[0], out) {
                            return false;
                        }
                        out.push(")");
                        true
                    }
                    kind => {
                        let joiner = if kind == pg_sys::BoolExprType::AND_EXPR {
                            " AND "
                        } else {
                            " OR "
                        };
                        out.push("(");
                        if !self.list((*b).args, joiner, out) {
                            return false;
                        }
                        out.push(")");
                        true
                    }
                }
            }
            pg_sys::NodeTag::T_NullTest => {
                let t = node as *mut pg_sys::NullTest;
                if (*t).argisrow {
                    return false;
                }
                out.push("(");
                if !self.expr((*t).arg as *mut pg_sys::Node, out) {
                    return false;
                }
                out.push(if (*t).nulltesttype == pg_sys::NullTestType::IS_NULL {
                    " IS NULL)"
                } else {
                    " IS NOT NULL)"
                });
                true
            }
            pg_sys::NodeTag::T_BooleanTest => {
                let t = node as *mut pg_sys::BooleanTest;
                let test = match (*t).booltesttype {
                    pg_sys::BoolTestType::IS_TRUE => " IS TRUE)",
                    pg_sys::BoolTestType::IS_NOT_TRUE => " IS NOT TRUE)",
                    pg_sys::BoolTestType::IS_FALSE => " IS FALSE)",
                    pg_sys::BoolTestType::IS_NOT_FALSE => " IS NOT FALSE)",
                    pg_sys::BoolTestType::IS_UNKNOWN => " IS UNKNOWN)",
                    _ => " IS NOT UNKNOWN)",
                };
                out.push("(");
                if !self.expr((*t).arg as *mut pg_sys::Node, out) {
                    return false;
                }
                out.push(test);
                true
            }
            pg_sys::NodeTag::T_RelabelType => {
                let r = node as *mut pg_sys::RelabelType;
                if !builtin((*r).resulttype) {
                    return false;
                }
                out.push("(");
                if !self.expr((*r).arg as *mut pg_sys::Node, out) {
                    return false;
                }
                out.push(&format!(
                    ")::{}",
                    type_sql((*r).resulttype, (*r).resulttypmod)
                ));
                // `x COLLATE "C"` is a relabelling to another collation.
                let from = pg_sys::exprCollation((*r).arg as *mut pg_sys::Node);
                from == (*r).resultcollid || self.collate((*r).resultcollid, out)
            }
            pg_sys::NodeTag::T_CollateExpr => {
                let c = node as *mut pg_sys::CollateExpr;
                out.push("(");
                if !self.expr((*c).arg as *mut pg_sys::Node, out) {
                    return false;
                }
                out.push(")");
                self.collate((*c).collOid, out)
            }
            pg_sys::NodeTag::T_Aggref => self.aggregate(node as *mut pg_sys::Aggref, out),
            pg_sys::NodeTag::T_ArrayExpr => {
                let a = node as *mut pg_sys::ArrayExpr;
                if !builtin((*a).array_typeid) || (*a).multidims {
                    return false;
                }
                out.push("ARRAY[");
                if !self.list((*a).elements, ", ", out) {
                    return false;
                }
                out.push(&format!("]::{}", type_sql((*a).array_typeid, -1)));
                true
            }
            pg_sys::NodeTag::T_CaseExpr => self.case(node as *mut pg_sys::CaseExpr, out),
            pg_sys::NodeTag::T_CaseTestExpr => {
                // Only a simple CASE's WHEN conditions are deparsed with a subject set; the
                // placeholder is written as the subject (immutable, so repeating it is safe).
                let subject = self.case_subject.get();
                !subject.is_null() && self.expr(subject, out)
            }
            pg_sys::NodeTag::T_CoalesceExpr => {
                let c = node as *mut pg_sys::CoalesceExpr;
                self.typed_call("COALESCE", (*c).coalescetype, (*c).args, out)
            }
            pg_sys::NodeTag::T_MinMaxExpr => {
                let m = node as *mut pg_sys::MinMaxExpr;
                // Comparing text depends on the collation; numbers, dates and the like do not.
                if (*m).inputcollid != pg_sys::InvalidOid {
                    return false;
                }
                let name = if (*m).op == pg_sys::MinMaxOp::IS_GREATEST {
                    "GREATEST"
                } else {
                    "LEAST"
                };
                self.typed_call(name, (*m).minmaxtype, (*m).args, out)
            }
            pg_sys::NodeTag::T_NullIfExpr => {
                // NULLIF(a, b) compares with the type's = operator: deparsed as that operator.
                let n = node as *mut pg_sys::NullIfExpr;
                let args = list_nodes((*n).args);
                if args.len() != 2 || !builtin((*n).opresulttype) {
                    return false;
                }
                out.push("(CASE WHEN ");
                if !self.operator(
                    (*n).opno,
                    (*n).opfuncid,
                    (*n).inputcollid,
                    (*n).args,
                    None,
                    out,
                ) {
                    return false;
                }
                out.push(" THEN NULL ELSE ");
                if !self.expr(args[0], out) {
                    return false;
                }
                out.push(&format!(" END)::{}", type_sql((*n).opresulttype, -1)));
                true
            }
            _ => false,
        }
    }

    /// `CASE … END`, cast to its type so that the worker resolves the branches as the
    /// coordinator did. A simple CASE (`CASE x WHEN 1 …`) becomes a searched one: its WHEN
    /// conditions compare the subject through a placeholder, written out as the subject.
    unsafe fn case(&self, c: *mut pg_sys::CaseExpr, out: &mut Sql) -> bool {
        if !builtin((*c).casetype) {
            return false;
        }
        let outer_subject = self.case_subject.replace((*c).arg as *mut pg_sys::Node);
        let deparsed = (|| {
            out.push("(CASE");
            for when in list_nodes((*c).args) {
                let when = when as *mut pg_sys::CaseWhen;
                out.push(" WHEN ");
                if !self.expr((*when).expr as *mut pg_sys::Node, out) {
                    return false;
                }
                // The results do not compare the subject: no placeholder there.
                let subject = self.case_subject.replace(std::ptr::null_mut());
                out.push(" THEN ");
                let result = self.expr((*when).result as *mut pg_sys::Node, out);
                self.case_subject.set(subject);
                if !result {
                    return false;
                }
            }
            if !(*c).defresult.is_null() {
                self.case_subject.set(std::ptr::null_mut());
                out.push(" ELSE ");
                if !self.expr((*c).defresult as *mut pg_sys::Node, out) {
                    return false;
                }
            }
            out.push(&format!(" END)::{}", type_sql((*c).casetype, -1)));
            true
        })();
        self.case_subject.set(outer_subject);
        deparsed
    }

    /// `NAME(arg, …)::type`, for the variadic SQL constructs COALESCE, GREATEST and LEAST.
    unsafe fn typed_call(
        &self,
        name: &str,
        type_oid: pg_sys::Oid,
        args: *mut pg_sys::List,
        out: &mut Sql,
    ) -> bool {
        if !builtin(type_oid) {
            return false;
        }
        out.push(&format!("({name}("));
        if !self.list(args, ", ", out) {
            return false;
        }
        out.push(&format!("))::{}", type_sql(type_oid, -1)));
        true
    }

    /// A built-in aggregate call, with DISTINCT, ORDER BY and FILTER. An encrypted argument is
    /// only counted (its envelope is not its value): `count(DISTINCT x)` counts distinct tags.
    unsafe fn aggregate(&self, a: *mut pg_sys::Aggref, out: &mut Sql) -> bool {
        if !builtin((*a).aggfnoid)
            || (*a).aggkind as u8 != b'n'
            || (*a).agglevelsup != 0
            || (*a).aggvariadic
            || !(*a).aggdirectargs.is_null()
        {
            return false;
        }
        let name = cstr(pg_sys::get_func_name((*a).aggfnoid));
        if !orders_alike_everywhere((*a).inputcollid)
            && !pgshard_core::combine::collation_free(&name)
        {
            return false;
        }
        out.push(&format!("pg_catalog.{}(", quote_ident(&name)));
        if (*a).aggstar {
            out.push("*");
        } else {
            if !(*a).aggdistinct.is_null() {
                out.push("DISTINCT ");
            }
            let args: Vec<*mut pg_sys::TargetEntry> = list_pointers((*a).args)
                .into_iter()
                .map(|e| e as *mut pg_sys::TargetEntry)
                .filter(|e| !(**e).resjunk)
                .collect();
            for (i, entry) in args.iter().enumerate() {
                if i > 0 {
                    out.push(", ");
                }
                let arg = (**entry).expr as *mut pg_sys::Node;
                let pushed = if encryption::kind_of_type(pg_sys::exprType(arg)).is_some() {
                    name == "count"
                        && if (*a).aggdistinct.is_null() {
                            self.expr(arg, out)
                        } else {
                            self.tag(arg, out)
                        }
                } else {
                    self.expr(arg, out)
                };
                if !pushed {
                    return false;
                }
            }
            for (i, clause) in list_pointers((*a).aggorder).into_iter().enumerate() {
                let clause = clause as *mut pg_sys::SortGroupClause;
                let entry = pg_sys::get_sortgroupref_tle((*clause).tleSortGroupRef, (*a).args);
                let expr = (*entry).expr as *mut pg_sys::Node;
                let Some(direction) = sort_direction(clause, expr) else {
                    return false;
                };
                out.push(if i == 0 { " ORDER BY " } else { ", " });
                if !self.expr(expr, out) {
                    return false;
                }
                out.push(&direction);
            }
        }
        out.push(")");
        if !(*a).aggfilter.is_null() {
            out.push(" FILTER (WHERE ");
            if !self.expr((*a).aggfilter as *mut pg_sys::Node, out) {
                return false;
            }
            out.push(")");
        }
        true
    }

    /// ` COLLATE …` for the collations every server has alike; `false` for the others.
    fn collate(&self, collation: pg_sys::Oid, out: &mut Sql) -> bool {
        let name = match collation.to_u32() {
            C_COLLATION_OID => "C",
            POSIX_COLLATION_OID => "POSIX",
            _ => return false,
        };
        out.push(&format!(" COLLATE pg_catalog.\"{name}\""));
        true
    }

    unsafe fn list(&self, list: *mut pg_sys::List, separator: &str, out: &mut Sql) -> bool {
        for (i, arg) in list_nodes(list).into_iter().enumerate() {
            if i > 0 {
                out.push(separator);
            }
            if !self.expr(arg, out) {
                return false;
            }
        }
        true
    }

    /// `=` or `<>` between encrypted values, as a comparison of their blind-index tags (bytea
    /// on the worker): the tags of constants are computed here, columns' are cut out of the
    /// envelope by the worker.
    unsafe fn tag_comparison(
        &self,
        equal: bool,
        args: *mut pg_sys::List,
        quantifier: Option<&str>,
        out: &mut Sql,
    ) -> bool {
        let args = list_nodes(args);
        if args.len() != 2 {
            return false;
        }
        out.push("(");
        if !self.tag(args[0], out) {
            return false;
        }
        out.push(if equal { " = " } else { " <> " });
        let right = match quantifier {
            None => self.tag(args[1], out),
            Some(q) => {
                out.push(&format!("{q} ("));
                let pushed = self.tags(args[1], out);
                out.push(")");
                pushed
            }
        };
        out.push(")");
        right
    }

    /// The blind-index tag of an encrypted expression.
    unsafe fn tag(&self, node: *mut pg_sys::Node, out: &mut Sql) -> bool {
        if (*node).type_ == pg_sys::NodeTag::T_Const {
            let c = node as *mut pg_sys::Const;
            out.push(&if (*c).constisnull {
                "NULL::bytea".to_string()
            } else {
                encryption::bytea_literal(&encryption::datum_tag((*c).constvalue))
            });
            return true;
        }
        let mut envelope = Sql::default();
        if !self.expr(node, &mut envelope) {
            return false;
        }
        out.push("substring(");
        out.append(envelope);
        out.push(&format!(
            " FROM {} FOR {})",
            pgshard_core::envelope::TAG_SQL_FROM,
            pgshard_core::envelope::TAG_LEN
        ));
        true
    }

    /// The tags of an array of encrypted values: a constant array or an ARRAY[…] expression.
    unsafe fn tags(&self, node: *mut pg_sys::Node, out: &mut Sql) -> bool {
        match (*node).type_ {
            pg_sys::NodeTag::T_Const => {
                let c = node as *mut pg_sys::Const;
                if (*c).constisnull {
                    out.push("NULL::bytea[]");
                    return true;
                }
                let element = pg_sys::get_element_type((*c).consttype);
                // NULL elements stay: `<> ALL` with a NULL element is never true.
                let tags: Vec<String> = crate::scan::array_elements((*c).constvalue, element)
                    .into_iter()
                    .map(|value| match value {
                        None => "NULL".to_string(),
                        Some(value) => encryption::bytea_literal(&encryption::datum_tag(value)),
                    })
                    .collect();
                out.push(&format!("ARRAY[{}]::bytea[]", tags.join(", ")));
                true
            }
            pg_sys::NodeTag::T_ArrayExpr => {
                let a = node as *mut pg_sys::ArrayExpr;
                if (*a).multidims {
                    return false;
                }
                out.push("ARRAY[");
                for (i, element) in list_nodes((*a).elements).into_iter().enumerate() {
                    if i > 0 {
                        out.push(", ");
                    }
                    if !self.tag(element, out) {
                        return false;
                    }
                }
                out.push("]::bytea[]");
                true
            }
            _ => false,
        }
    }

    unsafe fn operator(
        &self,
        opno: pg_sys::Oid,
        funcid: pg_sys::Oid,
        collation: pg_sys::Oid,
        args: *mut pg_sys::List,
        quantifier: Option<&str>,
        out: &mut Sql,
    ) -> bool {
        let funcid = if funcid == pg_sys::InvalidOid {
            pg_sys::get_opcode(opno)
        } else {
            funcid
        };
        if !builtin(opno) || pg_sys::func_volatile(funcid) as u8 != b'i' {
            return false;
        }
        let args = list_nodes(args);
        let equality = args.len() == 2 && pg_sys::op_hashjoinable(opno, pg_sys::exprType(args[0]));
        if !collation_safe(collation, funcid, equality) {
            return false;
        }
        let name = format!("OPERATOR(pg_catalog.{})", cstr(pg_sys::get_opname(opno)));
        out.push("(");
        match (args.len(), quantifier) {
            (1, None) => {
                out.push(&name);
                out.push(" ");
                if !self.expr(args[0], out) {
                    return false;
                }
            }
            (2, _) => {
                if !self.expr(args[0], out) {
                    return false;
                }
                out.push(&format!(" {name} "));
                if let Some(q) = quantifier {
                    out.push(&format!("{q} ("));
                }
                if !self.expr(args[1], out) {
                    return false;
                }
                if quantifier.is_some() {
                    out.push(")");
                }
            }
            _ => return false,
        }
        out.push(")");
        true
    }
}

/// Whether an expression can be computed once on the coordinator before the remote query
/// runs: it reads no column, calls nothing volatile, and holds no subquery or aggregate.
///
/// # Safety
/// `node` must be a valid planner expression.
pub unsafe fn coordinator_evaluable(node: *mut pg_sys::Node) -> bool {
    !pg_sys::contain_var_clause(node)
        && !contains_case_placeholder(node)
        && !pg_sys::contain_volatile_functions(node)
        && !pg_sys::contain_subplans(node)
        && !pg_sys::contain_agg_clause(node)
        && !pg_sys::expression_returns_set(node)
        && (builtin(worker_type(pg_sys::exprType(node), -1).0)
            || encryption::kind_of_type(pg_sys::exprType(node)).is_some())
}

/// Whether `node` holds a CaseTestExpr outside the construct it stands for: the placeholder
/// for the subject of a simple CASE being deparsed, which has no value on its own. A whole
/// simple CASE, or an array coercion (whose per-element expression uses the placeholder too),
/// is complete and can be computed.
unsafe fn contains_case_placeholder(node: *mut pg_sys::Node) -> bool {
    #[pg_guard]
    unsafe extern "C-unwind" fn walk(node: *mut pg_sys::Node, context: *mut c_void) -> bool {
        if node.is_null() {
            return false;
        }
        match (*node).type_ {
            pg_sys::NodeTag::T_CaseTestExpr => true,
            pg_sys::NodeTag::T_CaseExpr if !(*(node as *mut pg_sys::CaseExpr)).arg.is_null() => {
                // The WHEN conditions compare this CASE's own subject; look everywhere else.
                let case = node as *mut pg_sys::CaseExpr;
                walk((*case).arg.cast(), context)
                    || list_nodes((*case).args)
                        .into_iter()
                        .any(|when| walk((*(when as *mut pg_sys::CaseWhen)).result.cast(), context))
                    || walk((*case).defresult.cast(), context)
            }
            pg_sys::NodeTag::T_ArrayCoerceExpr => walk(
                (*(node as *mut pg_sys::ArrayCoerceExpr)).arg.cast(),
                context,
            ),
            _ => pg_sys::expression_tree_walker(node, Some(walk), context),
        }
    }
    walk(node, std::ptr::null_mut())
}

fn builtin(oid: pg_sys::Oid) -> bool {
    oid.to_u32() < FIRST_NORMAL_OBJECT_ID
}

/// Built-in functions on collatable types whose result does not depend on the collation
/// (with deterministic collations they work on bytes): safe to push whatever the collation.
const COLLATION_FREE: &[&str] = &[
    "textcat",
    "substr",
    "substring",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "bit_length",
    "btrim",
    "ltrim",
    "rtrim",
    "replace",
    "left",
    "right",
    "lpad",
    "rpad",
    "md5",
    "split_part",
    "strpos",
    "reverse",
    "repeat",
    "starts_with",
    "textlike",
    "textnlike",
    "bpcharlike",
    "bpcharnlike",
    "text",
    "varchar",
    "bpchar",
];

/// Whether `function` under `collation` gives the same answer on a worker: orderings and case
/// mappings depend on the locale, and a worker's may differ from the coordinator's.
unsafe fn collation_safe(collation: pg_sys::Oid, function: pg_sys::Oid, equality: bool) -> bool {
    orders_alike_everywhere(collation)
        || equality
        || COLLATION_FREE.contains(&cstr(pg_sys::get_func_name(function)).as_str())
}

/// Whether values under `collation` sort the same on every server: no collation, or "C"/"POSIX"
/// (byte order). Other collations depend on each server's locale library.
pub fn orders_alike_everywhere(collation: pg_sys::Oid) -> bool {
    let c = collation.to_u32();
    c == 0 || c == C_COLLATION_OID || c == POSIX_COLLATION_OID
}

/// ` ASC NULLS LAST` and the like for a sort clause over `expr`, when a worker sorts the same:
/// the type's default ordering operators, no locale-dependent collation, no user-defined order
/// (the encrypted types' order decrypts, which only the coordinator can do).
///
/// # Safety
/// `clause` and `expr` must be valid.
pub unsafe fn sort_direction(
    clause: *mut pg_sys::SortGroupClause,
    expr: *mut pg_sys::Node,
) -> Option<String> {
    if !orders_alike_everywhere(pg_sys::exprCollation(expr))
        || (*clause).sortop.to_u32() >= FIRST_NORMAL_OBJECT_ID
    {
        return None;
    }
    let types = pg_sys::lookup_type_cache(
        pg_sys::exprType(expr),
        (pg_sys::TYPECACHE_LT_OPR | pg_sys::TYPECACHE_GT_OPR) as i32,
    );
    let direction = if (*clause).sortop == (*types).lt_opr {
        "ASC"
    } else if (*clause).sortop == (*types).gt_opr {
        "DESC"
    } else {
        return None;
    };
    let nulls = if (*clause).nulls_first {
        "FIRST"
    } else {
        "LAST"
    };
    Some(format!(" {direction} NULLS {nulls}"))
}

/// A type as SQL, e.g. `character varying(10)`.
pub fn type_sql(type_oid: pg_sys::Oid, typmod: i32) -> String {
    // SAFETY: format_type_with_typemod works for any type oid.
    unsafe { cstr(pg_sys::format_type_with_typemod(type_oid, typmod)) }
}

/// The type a worker stores and reads for a coordinator type, with its typmod: a domain is its
/// base type and an array of a domain the array of that base type. Workers do not have the
/// domain; the coordinator checks its constraints before a value leaves.
pub fn worker_type(type_oid: pg_sys::Oid, typmod: i32) -> (pg_sys::Oid, i32) {
    // SAFETY: catalog lookups by oid.
    unsafe {
        let mut base_typmod = typmod;
        let base = pg_sys::getBaseTypeAndTypmod(type_oid, &mut base_typmod);
        if base != type_oid {
            return (base, base_typmod);
        }
        let element = pg_sys::get_element_type(type_oid);
        if element != pg_sys::InvalidOid && is_domain(element) {
            let mut element_typmod = typmod;
            let element_base = pg_sys::getBaseTypeAndTypmod(element, &mut element_typmod);
            let array = pg_sys::get_array_type(element_base);
            if array != pg_sys::InvalidOid {
                return (array, element_typmod);
            }
        }
        (type_oid, typmod)
    }
}

/// The SQL name of [`worker_type`].
pub fn worker_type_sql(type_oid: pg_sys::Oid, typmod: i32) -> String {
    let (type_oid, typmod) = worker_type(type_oid, typmod);
    type_sql(type_oid, typmod)
}

/// Whether a type is a domain or an array of domains: its values must be checked on the
/// coordinator, since the shards hold the base type.
pub fn holds_domain(type_oid: pg_sys::Oid) -> bool {
    // SAFETY: catalog lookups by oid.
    unsafe {
        let element = pg_sys::get_element_type(type_oid);
        is_domain(type_oid) || (element != pg_sys::InvalidOid && is_domain(element))
    }
}

pub fn is_domain(type_oid: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup by oid.
    unsafe { pg_sys::get_typtype(type_oid) == pg_sys::TYPTYPE_DOMAIN as c_char }
}

/// The type a worker declares for a parameter that takes the value of `node` (see
/// [`literal`]): an encrypted value is its envelope, `bytea`. `None` for a pseudo-type, which
/// a parameter cannot have.
///
/// # Safety
/// `node` must be a valid expression.
pub unsafe fn parameter_type(node: *mut pg_sys::Node) -> Option<String> {
    let type_oid = pg_sys::exprType(node);
    if encryption::kind_of_type(type_oid).is_some() {
        return Some("bytea".into());
    }
    if pg_sys::get_typtype(type_oid) == pg_sys::TYPTYPE_PSEUDO as c_char {
        return None;
    }
    Some(worker_type_sql(type_oid, pg_sys::exprTypmod(node)))
}

/// A value as an SQL literal with an explicit cast, e.g. `'2024-01-31'::date`. Dates, times
/// and intervals are written in ISO style whatever the session's DateStyle, so that a worker
/// reads them back the same.
///
/// # Safety
/// `datum` must be a value of `type_oid` (ignored when `is_null`).
pub unsafe fn literal(
    datum: pg_sys::Datum,
    is_null: bool,
    type_oid: pg_sys::Oid,
    typmod: i32,
) -> String {
    // An encrypted value goes as its envelope; its output function would decrypt it.
    if encryption::kind_of_type(type_oid).is_some() {
        return if is_null {
            "NULL::bytea".into()
        } else {
            encryption::bytea_literal(encryption::datum_bytes(datum))
        };
    }
    let type_name = worker_type_sql(type_oid, typmod);
    if is_null {
        return format!("NULL::{type_name}");
    }
    let mut output = pg_sys::InvalidOid;
    let mut varlena = false;
    pg_sys::getTypeOutputInfo(type_oid, &mut output, &mut varlena);
    let (date_style, date_order, interval_style) =
        (pg_sys::DateStyle, pg_sys::DateOrder, pg_sys::IntervalStyle);
    pg_sys::DateStyle = pg_sys::USE_ISO_DATES as i32;
    pg_sys::DateOrder = pg_sys::DATEORDER_YMD as i32;
    pg_sys::IntervalStyle = pg_sys::INTSTYLE_POSTGRES as i32;
    let text = pg_sys::OidOutputFunctionCall(output, datum);
    pg_sys::DateStyle = date_style;
    pg_sys::DateOrder = date_order;
    pg_sys::IntervalStyle = interval_style;
    format!(
        "{}::{type_name}",
        pgshard_core::layout::quote_literal(&cstr(text))
    )
}

/// The nodes of a List of pointers.
///
/// # Safety
/// `list` must be NULL or a valid pointer List.
pub unsafe fn list_nodes(list: *mut pg_sys::List) -> Vec<*mut pg_sys::Node> {
    list_pointers(list)
        .into_iter()
        .map(|p| p as *mut pg_sys::Node)
        .collect()
}

/// The elements of a List of pointers.
///
/// # Safety
/// `list` must be NULL or a valid pointer List.
pub unsafe fn list_pointers(list: *mut pg_sys::List) -> Vec<*mut c_void> {
    if list.is_null() {
        return Vec::new();
    }
    (0..(*list).length as usize)
        .map(|i| (*(*list).elements.add(i)).ptr_value)
        .collect()
}

/// The members of an integer List.
///
/// # Safety
/// `list` must be NULL or a valid integer List.
pub unsafe fn list_ints(list: *mut pg_sys::List) -> Vec<u32> {
    if list.is_null() {
        return Vec::new();
    }
    (0..(*list).length as usize)
        .map(|i| (*(*list).elements.add(i)).int_value as u32)
        .collect()
}

/// Builds a List of pointers.
///
/// # Safety
/// Allocates in the current memory context.
pub unsafe fn make_list<T>(items: impl IntoIterator<Item = *mut T>) -> *mut pg_sys::List {
    let mut list: *mut pg_sys::List = std::ptr::null_mut();
    for item in items {
        list = pg_sys::lappend(list, item.cast());
    }
    list
}
