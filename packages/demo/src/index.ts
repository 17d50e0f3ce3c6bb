export * from './synthetic-image.ts';
export * from './layout-registry.ts';
