"""Cost passes over the IR: event fan-out, static costs, dynamic (data-driven) activity, energy, hardware resources."""
