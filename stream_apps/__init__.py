"""Stream applications: the inference consumer group and the Faust counting app."""
