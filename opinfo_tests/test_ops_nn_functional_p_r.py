"""OpInfo tests: the operators whose OpInfo name is from 'nn_functional_p' up to 'nn_functional_s' (opinfo_cases.RANGES), except the CI slice's."""

from opinfo_cases import generated_tests

globals().update(generated_tests(__file__))
