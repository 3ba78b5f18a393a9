"""OpInfo tests: the operators whose OpInfo name is from 'special' up to 'spl' (opinfo_cases.RANGES), except the CI slice's."""

from opinfo_cases import generated_tests

globals().update(generated_tests(__file__))
