"""Neural-network building blocks shared by several model families (torch, imported on use)."""
