"""Built-in experiments, registered through ``latentopt_register_experiments`` like third-party ones."""
