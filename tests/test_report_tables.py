"""The report's tables as a journal takes them (issue 25): Table 2 cells that equal the TSVs,
determinants per clinically meaningful unit, one number format, Table 1 with its tests, and
every numbered table written as TSV and HTML fragment under group/tables/."""

from __future__ import annotations

import html
import re
import warnings
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from ironmap.cohort.demographics import ORDINAL_QUANTILE, group_tests, quartiles
from ironmap.cohort.determinants import (
    OPTIONAL_PREDICTORS,
    PREDICTORS,
    UNIT_COLUMNS,
    UNITS,
    determinants,
)
from ironmap.io.derivatives import GROUP_DIR, GROUP_TABLES_DIR, read_tsv
from ironmap.report import tables
from ironmap.report.html import write_report
from test_determinants import _table_data
from test_report import cohort  # noqa: F401 - the module-scoped group-stage fixture

_NUMBER = r"-?\d+(?:\.\d+)?"
_CI = re.compile(rf"^({_NUMBER}) \[({_NUMBER}), ({_NUMBER})\]$")


def _ci(text: str) -> tuple[float, float, float]:
    match = _CI.match(text)
    assert match, text
    return tuple(float(v) for v in match.groups())


# -- one number format -----------------------------------------------------------------------


def test_estimates_and_p_values_have_one_format():
    assert tables.fmt_ci(-0.227, -0.462, 0.00879) == "-0.23 [-0.46, 0.01]"
    assert tables.fmt_ci(5.51, -95.2, 106.0) == "5.51 [-95.20, 106.00]"
    assert tables.fmt_ci(-0.001, -0.004, 0.002) == "0.00 [0.00, 0.00]"  # no "-0.00"
    assert tables.fmt_p(0.00049) == "<0.001"
    assert tables.fmt_p(0.101) == "0.10"
    assert tables.fmt_p(0.00511) == "0.0051"
    assert tables.fmt_p(0.872) == "0.87"
    assert tables.fmt_p(1.0) == "1.0"
    assert tables.fmt_p(0.0496) == "0.0496"  # never rounded up to the threshold
    assert tables.fmt_p(np.nan) == "n/a"
    assert tables.p_is("p_FDR", 0.0004) == "p_FDR < 0.001"
    assert tables.p_is("p", 0.0123) == "p = 0.012"


# -- Table 2 -----------------------------------------------------------------------------------


def _long(out):
    regions = read_tsv(out / "group" / "regions.tsv")
    subjects = read_tsv(out / "group" / "subjects.tsv")
    return regions[regions.hemisphere == "both"].merge(
        subjects[subjects.analysed], on="participant_id"
    )


def test_table2_cells_equal_group_comparison(cohort):  # noqa: F811
    _, out, _ = cohort
    comparison = read_tsv(out / "group" / "group_comparison.tsv")
    table, significant = tables.table2(_long(out), comparison)
    checked = 0
    for row in comparison.itertuples():
        cell = table.at[row.region, row.contrast]
        assert "in the TSV" not in cell
        lines = cell.split("\n")
        if row.contrast == "phenotype-omnibus":
            if np.isnan(row.p):
                continue
            test = f"F({row.df_num:.0f}, {row.df_den:.0f}) = {row.statistic:.2f}"
            assert lines[0] == f"{test}, {tables.p_is('p', row.p)}"
        else:
            if np.isnan(row.estimate):
                continue
            est, low, high = _ci(lines[0])
            assert (est, low, high) == pytest.approx(
                (row.estimate, row.ci_low, row.ci_high), abs=0.005 + 1e-9
            )
            assert lines[1].startswith("d = ")
            d, d_low, d_high = _ci(lines[1].removeprefix("d = "))
            assert (d, d_low, d_high) == pytest.approx(
                (row.cohens_d, row.cohens_d_ci_low, row.cohens_d_ci_high), abs=0.005 + 1e-9
            )
            test = f"t({row.df_den:.0f}) = {tables.fmt_number(row.statistic)}"
            assert lines[2] == f"{test}, {tables.p_is('p', row.p)}"
            assert float(test.split(" = ")[1]) == pytest.approx(row.statistic, abs=0.005 + 1e-9)
        assert lines[-1] == tables.p_is("p_FDR", row.p_fdr)
        assert significant.at[row.region, row.contrast] == (str(row.significant) == "True")
        checked += 1
    assert checked >= 20


# -- determinants per clinically meaningful unit -----------------------------------------------


def test_unit_betas_are_beta_times_the_scale_in_closed_form():
    slopes = {"disease_duration": 0.06, "edss": 0.25}
    data = _table_data(5, cortical_sd=1.5, slopes=slopes, n_per_site=60)
    table = determinants(data, n_bootstrap=0)
    assert set(UNIT_COLUMNS) <= set(table.columns)
    assert set(UNITS) == {*PREDICTORS, *OPTIONAL_PREDICTORS}
    primary = table[table["model"] == "multivariable"].set_index("predictor")
    scale = primary["unit_scale"]
    assert scale["disease_duration"] == 10.0
    assert scale["edss"] == 1.0
    assert scale["lesion_volume_ml"] == pytest.approx(np.log(2))
    for p in ("nbv", "cortical_gm_ml"):  # one SD over the model's participants
        assert scale[p] == pytest.approx(data[p].std(ddof=1), rel=1e-12)
    for column, unit in (("beta", "beta_unit"), ("ci_low", "ci_low_unit")):
        np.testing.assert_allclose(primary[unit], primary[column] * scale, rtol=1e-12)
    # closed form: the model refitted with each predictor divided by its scale gives beta_unit
    dummies = pd.get_dummies(data[["sex", "site"]], drop_first=True, dtype=float)
    x = data[list(PREDICTORS)] / scale[list(PREDICTORS)].to_numpy()
    design = sm.add_constant(pd.concat([x, data[["age"]], dummies], axis=1))
    fit = sm.OLS(data["y"], design).fit()
    for p in PREDICTORS:
        assert fit.params[p] == pytest.approx(primary.at[p, "beta_unit"], rel=1e-8)
        low, high = fit.conf_int().loc[p]
        assert (low, high) == pytest.approx(
            (primary.at[p, "ci_low_unit"], primary.at[p, "ci_high_unit"]), rel=1e-8
        )
    assert primary.at["disease_duration", "unit"] == "10 years"
    assert primary.at["disease_duration", "beta_unit"] == pytest.approx(
        10 * primary.at["disease_duration", "beta"]
    )


def test_determinants_table_has_readable_labels_and_the_unit_in_the_header():
    table = determinants(_table_data(4, cortical_sd=0.3), n_bootstrap=0)
    grid = tables.determinants_table(table)
    heads = [c for c in grid.columns if "\nper " in c]
    assert len(heads) == len(PREDICTORS)
    text = " ".join(heads)
    for code in ("_ml", "log(1 +", "brain / ICV", "nbv", "disease_duration"):
        assert code not in text, (code, heads)
    for unit in ("per 10 years", "per EDSS point", "per SD", "per doubling"):
        assert unit in text
    primary = table[table["model"] == "multivariable"].set_index("predictor")
    head = next(c for c in heads if c.startswith("disease duration"))
    first = grid.at[0, head].split("\n")[0]
    values = _ci(first)
    expected = primary.loc["disease_duration", ["beta_unit", "ci_low_unit", "ci_high_unit"]]
    assert values == pytest.approx(tuple(expected), abs=0.005 + 1e-9)
    bold = tables.determinants_significant(table.assign(p_fdr=0.001))
    assert bold.iloc[0][heads].all()
    corr = tables.correlation_table(table)
    assert not any("_" in str(v) for v in corr.iloc[:, 0])


# -- Table 1 -----------------------------------------------------------------------------------


def _subjects(seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(60):
        hc = i < 25
        rows.append(
            {
                "participant_id": f"sub-{i:02d}",
                "group": "HC" if hc else "MS",
                "phenotype": np.nan if hc else ("RRMS", "SPMS")[i % 2],
                "site": "ab"[i % 2],
                "age": rng.uniform(20, 60),
                "sex": "F" if rng.random() < (0.4 if hc else 0.75) else "M",
                "disease_duration": np.nan if hc else rng.uniform(1, 20),
                "edss": np.nan if hc else rng.integers(0, 14) / 2,
                "lesion_volume_ml": np.nan if hc else rng.gamma(2, 2),
                "nbv": rng.normal(0.89, 0.01),
            }
        )
    return pd.DataFrame(rows)


def test_edss_quartiles_are_on_the_scale():
    subjects = _subjects()
    table = tables.table1(subjects).set_index("group")
    cells = table["EDSS\nmedian [IQR]"].drop(["HC", tables.TESTS_ROW])
    for arm, cell in cells.items():
        match = re.fullmatch(rf"({_NUMBER}) \[({_NUMBER})-({_NUMBER})\]", cell)
        assert match, cell
        values = np.array([float(v) for v in match.groups()])
        assert np.all(values * 2 == np.round(values * 2)), (arm, cell)
    ms = subjects.loc[subjects["group"] == "MS", "edss"]
    assert np.quantile(ms, [0.25, 0.5, 0.75]) % 0.5 != pytest.approx(0)  # linear would not do
    q1, q2, q3 = quartiles(ms, ordinal=True)
    assert (q1, q2, q3) == tuple(np.quantile(ms, [0.25, 0.5, 0.75], method=ORDINAL_QUANTILE))
    assert cells["MS (all)"] == f"{q2:.1f} [{q1:.1f}-{q3:.1f}]"


def test_table1_tests_between_groups_equal_scipy():
    subjects = _subjects()
    tests = group_tests(subjects).set_index("variable")
    hc, ms = subjects[subjects["group"] == "HC"], subjects[subjects["group"] == "MS"]
    counts = pd.crosstab(subjects["group"], subjects["sex"]).to_numpy()
    chi2, p, _, _ = stats.chi2_contingency(counts)
    assert tests.at["sex", "p"] == pytest.approx(p, rel=1e-12)
    assert tests.at["sex", "statistic"] == pytest.approx(chi2, rel=1e-12)
    assert tests.at["sex", "test"].startswith("chi-square")
    welch = stats.ttest_ind(hc["age"], ms["age"], equal_var=False)
    assert tests.at["age", "p"] == pytest.approx(welch.pvalue, rel=1e-12)
    assert tests.at["age", "test"].startswith("Welch")
    table = tables.table1(subjects)
    tested = table[table["group"].str.startswith("p,")]
    assert len(tested) == 1
    assert tested["female\nn (%)"].iloc[0] == f"{tables.p_is('p', p)}\n(chi-square)"


def test_sex_test_is_fisher_exact_with_small_expected_counts():
    subjects = _subjects().iloc[18:40]  # 7 HC, 15 MS
    counts = pd.crosstab(subjects["group"], subjects["sex"]).to_numpy()
    assert (stats.contingency.expected_freq(counts) < 5).any()
    tests = group_tests(subjects).set_index("variable")
    assert tests.at["sex", "test"] == "Fisher exact"
    assert tests.at["sex", "p"] == pytest.approx(stats.fisher_exact(counts).pvalue, rel=1e-12)


# -- table files -------------------------------------------------------------------------------


class _Cells(HTMLParser):
    """The rows of every <table> in a page: text of each cell, <br> as a newline, and whether
    the cell is bold (class 'sig' in the report, <b> in a fragment)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[tuple[str, bool]]]] = []
        self._cell: list[str] | None = None
        self._bold = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._bold = [], "sig" in (attrs.get("class") or "")
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")
        elif tag == "b" and self._cell is not None:
            self._bold = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append((html.unescape("".join(self._cell)), self._bold))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> list[list[list[tuple[str, bool]]]]:
    parser = _Cells()
    parser.feed(text)
    return parser.tables


def test_every_numbered_table_is_written_as_tsv_and_html_fragment(cohort, tmp_path):  # noqa: F811
    _, out, result = cohort
    folder = out / GROUP_DIR / GROUP_TABLES_DIR
    stale = folder / "tableS99.tsv"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("from an earlier run\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report's own warnings are tested elsewhere
        write_report(out / "report.html", result, tables_dir=folder)
    assert not stale.exists()
    page = (out / "report.html").read_text()
    numbers = re.findall(r"<b>Table (S?\d+)\.</b>", page)
    assert {"1", "2", "S1"} <= set(numbers)
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(
        [f"table{k}.tsv" for k in numbers] + [f"table{k}.html" for k in numbers]
    )
    report_tables = _parse(page)
    assert len(report_tables) == len(numbers)
    for k, shown in zip(numbers, report_tables, strict=True):
        fragment = (folder / f"table{k}.html").read_text()
        assert "class=" not in fragment
        assert "<style" not in fragment
        assert fragment.count("<table") == 1
        assert _parse(fragment)[0] == shown, k
        tsv = pd.read_csv(folder / f"table{k}.tsv", sep="\t", dtype=str, keep_default_na=False)
        head = [tables.flat(c) for c, _ in shown[0]]
        assert list(tsv.columns) == head, k
        body = [[tables.flat(c) for c, _ in row] for row in shown[1:]]
        assert tsv.to_numpy().tolist() == body, k
    comparison = read_tsv(out / "group" / "group_comparison.tsv")
    table2 = pd.read_csv(folder / "table2.tsv", sep="\t", dtype=str, keep_default_na=False)
    row = comparison[(comparison.region == "putamen") & (comparison.contrast == "MS-HC")].iloc[0]
    cell = table2.loc[table2.iloc[:, 0] == "putamen"].filter(like="MS-HC").iloc[0, 0]
    assert cell.startswith(tables.fmt_ci(row.estimate, row.ci_low, row.ci_high) + "; d = ")


def test_a_constant_variable_is_not_tested():
    subjects = _subjects().assign(nbv=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tests = group_tests(subjects)
    assert list(tests["variable"]) == ["age", "sex"]


def test_flow_table_names_the_structures_the_minimum_voxel_rule_left_out():
    """Table S1 rows are readable: no code names (was 'analysed, red_nucleus'), and a
    participant with two structures left out is one row naming both."""
    from ironmap.report.tables import flow_table

    rule = "voxels (fewer than 5 in a hemisphere): left out of the group statistics"
    flow = pd.DataFrame(
        {
            "participant_id": ["sub-1", "sub-2", "sub-3", "sub-4"],
            "group": "HC",
            "phenotype": "n/a",
            "site": "a",
            "status": "analysed",
            "reason": "",
            "note": [
                "",
                f"red_nucleus: left 3, right 8 {rule}",
                f"substantia_nigra: left 2, right 9 {rule}; red_nucleus: left 1, right 4 {rule}",
                "age beyond the controls' 5th-95th percentile (20-60 years): analysed; its "
                f"age-corrected R2* rests on the linear tail; red_nucleus: left 2, right 2 {rule}",
            ],
        }
    )
    rows = dict(zip(*flow_table(flow)[["status / reason", "total"]].T.to_numpy(), strict=True))
    assert rows == {
        "analysed": "1",
        "analysed, red nucleus left out (too few voxels)": "1",
        "analysed, substantia nigra, red nucleus left out (too few voxels)": "1",
        "analysed, age beyond the controls' 5th-95th percentile (20-60 years); red nucleus "
        "left out (too few voxels)": "1",
    }
