"""Results: missing runs found with one listing per folder, lazy cached loading, the seed's helpers.

``listIndices``/``listMissingResults`` (indices), ``loadResults``/``Result``/``ResultView`` (lazy,
runs grouped per setting), ``getBest`` and the filters (tools), ``saveResult``/``atomicWrite`` (save).
"""
from pyexputils.results.indices import doneMask, listIndices, listMissingResults
from pyexputils.results.npy import readNpy
from pyexputils.results.paths import listResultsPaths
from pyexputils.results.results import DuckResult, Result, ResultList, ResultView, loadResults
from pyexputils.results.save import atomicWrite, saveResult
from pyexputils.results.tools import (
    ParameterError,
    find,
    getBest,
    getParam,
    rankSettings,
    score,
    sliceOverParameter,
    splitOverParameter,
    where,
    whereParameterEquals,
    whereParameterGreaterEq,
    whereParameterLesserEq,
    whereParametersEqual,
)

__all__ = [
    "DuckResult",
    "ParameterError",
    "Result",
    "ResultList",
    "ResultView",
    "atomicWrite",
    "doneMask",
    "find",
    "getBest",
    "getParam",
    "listIndices",
    "listMissingResults",
    "listResultsPaths",
    "loadResults",
    "rankSettings",
    "readNpy",
    "saveResult",
    "score",
    "sliceOverParameter",
    "splitOverParameter",
    "where",
    "whereParameterEquals",
    "whereParameterGreaterEq",
    "whereParameterLesserEq",
    "whereParametersEqual",
]
