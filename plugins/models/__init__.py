"""Built-in model factories and the network architectures behind them."""
