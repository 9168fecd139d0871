"""One Great Expectations Data Context per pipeline run, and the Data Docs site it writes.

Every table's expectation suite is validated through the same context, so the run's Data Docs
show all of them on one site (``index.html`` in the state folder's ``data_docs``). The context
itself is in memory: the suites are built from the run's rules each time, so no project folder
of YAML files can drift from the code; only the rendered site is kept (the latest run's).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import great_expectations as gx
import pandas as pd
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.data_context.types.base import (
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.expectations import Expectation

for _name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
    logging.getLogger(_name).setLevel(logging.ERROR)

DATA_DOCS_FOLDER = "data_docs"
SITE_NAME = "twotower"
DATASOURCE = "app_data"
MAX_EXAMPLES = 5
"""Unexpected values and rows kept per expectation (Data Docs, metadata): few, as a value may be a
whole description."""


def data_docs_dir(state_dir: Path) -> Path:
    """Where a state folder keeps the Data Docs site."""
    return Path(state_dir) / DATA_DOCS_FOLDER


@dataclass(frozen=True)
class DataDocs:
    """The site's front page and each validated table's own page."""

    index: Path
    validation_pages: dict[str, Path] = field(default_factory=dict)


class GxContext:
    """The Great Expectations context of one run: add a table's suite and validate its frame with
    :meth:`validate`, once per table, then :meth:`build_data_docs` once."""

    def __init__(self, data_docs: Path | None = None) -> None:
        self.data_docs = Path(data_docs) if data_docs is not None else None
        sites = {} if self.data_docs is None else {SITE_NAME: {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(self.data_docs)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }}
        self.context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(),
            data_docs_sites=sites,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        ))
        self._source = self.context.data_sources.add_pandas(DATASOURCE)
        self._validated: list[str] = []

    def validate(
        self, table: str, frame: pd.DataFrame, expectations: list[Expectation]
    ) -> ExpectationSuiteValidationResult:
        """Validate ``frame`` against the suite ``table`` made of ``expectations``."""
        if table in self._validated:
            raise ValueError(f"table {table!r} was already validated in this run; use one GxContext per run "
                             "and one suite per table")
        suite = self.context.suites.add(gx.ExpectationSuite(name=table, expectations=expectations))
        batch = self._source.add_dataframe_asset(table).add_batch_definition_whole_dataframe(table)
        validation = self.context.validation_definitions.add(
            gx.ValidationDefinition(name=table, data=batch, suite=suite))
        self._validated.append(table)
        return validation.run(batch_parameters={"dataframe": frame}, result_format={
            "result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES})

    def build_data_docs(self) -> DataDocs | None:
        """Render the site (suites and this run's results; pages of earlier runs are replaced)."""
        if self.data_docs is None:
            return None
        self.context.build_data_docs(site_names=[SITE_NAME])
        pages = {}
        for table in self._validated:
            found = sorted((self.data_docs / "validations" / table).glob("**/*.html"))
            if found:
                pages[table] = found[-1]
        return DataDocs(index=self.data_docs / "index.html", validation_pages=pages)
