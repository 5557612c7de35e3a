// Records what an informer's handlers saw, to compare with what the API server holds.
import type { Informer, KubeObject } from '../../../operator/src/runtime/informer.js';
import type { KubeClient } from '../../../operator/src/runtime/kube-client.js';

export class HandlerMirror<T extends KubeObject> {
  readonly objects = new Map<string, string>();
  readonly deleted = new Set<string>();
  readonly events: string[] = [];

  constructor(informer: Informer<T>) {
    informer.addHandler({
      onAdd: (o) => this.seen('add', o),
      onUpdate: (_, o) => this.seen('update', o),
      onDelete: (o) => {
        this.events.push(`delete ${o.metadata.name}`);
        this.objects.delete(o.metadata.name!);
        this.deleted.add(o.metadata.name!);
      },
    });
  }

  private seen(kind: string, o: T): void {
    this.events.push(`${kind} ${o.metadata.name}`);
    this.objects.set(o.metadata.name!, o.metadata.resourceVersion!);
    this.deleted.delete(o.metadata.name!);
  }

  /** name → resourceVersion of every object in the collection, from a fresh list. */
  static async serverState(client: KubeClient, path: string): Promise<Map<string, string>> {
    const list = await client.request<{ items: KubeObject[] }>({ method: 'GET', path });
    return new Map(list.items.map((o) => [o.metadata.name!, o.metadata.resourceVersion!]));
  }
}
