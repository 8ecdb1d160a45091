"""Tools that read a compiled result (summary, graph, staleness); no stage imports them."""
