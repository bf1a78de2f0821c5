"""Follow-up comparison: how a patient's hip oedema changed since the prior analysed MRI."""
