"""Built-in dataset plugins and the array-level loaders behind them."""
