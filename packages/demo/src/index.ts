export * from './synthetic-image.ts';
export * from './layout-registry.ts';
export * from './local-cluster.ts';
export * from './pull-client.ts';
export * from './demo.ts';
